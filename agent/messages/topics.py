"""The topic-name rule: what the publish API accepts in a URL and config accepts as a key."""

from __future__ import annotations

import re

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")
TOPIC_RULE = "topic names are 1-200 of A-Z a-z 0-9 . _ : - and start alphanumeric"


def is_valid_topic(name: str) -> bool:
    return bool(_TOPIC_NAME.match(name))
