"""The direct path's decode of a JobFirst line: its bytes straight into a msgspec Struct whose
fields are the keys JobFirst's tracing writes plus the other keys this file's lines have been
seen to carry (`level`, `user_id`, ...: the span's attributes), learned from the lines the
general path read. One decode in C, no dict, no `JobFirstLine`.

Every field is typed as `parse_line` reads it (a string; `status` an integer; an attribute a
string or an integer) and unknown keys are refused, so a line with a key not learned yet, a
null, a float, a nested value, a number where a string belongs, or any fault is not read
here: the caller parses it the general way (orjson and `parse_line`), which reads it or names
the fault, and learns its keys. Lines with a backslash (an escape) are left to the general
path too, so every `"key":` in a line read here is a key: where the attributes appear in the
line (their order, which the Struct does not keep) is found by a substring search.
Bounded: at most `MAX_EXTRAS` learned keys per file, learned from at most `LEARN_LIMIT` lines.
tests/unit/spans/decode/test_direct_jobfirst.py holds the two paths to the same answers.
"""

from __future__ import annotations

import re
from operator import attrgetter
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from agent.spans.decode.jobfirst_parse import CONSUMED
from agent.spans.model import Attributes

MAX_EXTRAS = 16
LEARN_LIMIT = 64
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1  # where orjson, like msgspec, reads an int
_PLAIN_KEY = re.compile(r'[^"\\\x00-\x1f]+')  # a key JSON writes as it is
# The consumed keys, typed as parse_line reads them.
_FIELDS: list[tuple[str, Any, Any]] = [
    (key, (int if key == "status" else str) | UnsetType, UNSET) for key in sorted(CONSUMED)
]


def _record_type(extras: list[str]) -> Any:
    """A Struct of the consumed keys and `extras` (as fields x0, x1, ...), all optional."""
    fields = _FIELDS + [
        (f"x{at}", str | int | UnsetType, msgspec.field(default=UNSET, name=key))
        for at, key in enumerate(extras)
    ]
    return msgspec.defstruct("JobFirstRecord", fields, forbid_unknown_fields=True)


class TypedLines:
    """One file's decode: the Struct of the keys its lines have shown so far."""

    def __init__(self) -> None:
        self._extras: list[str] = []
        self._needles: dict[str, bytes] = {}
        self._values: Any = None
        self._decode = msgspec.json.Decoder(_record_type([])).decode
        self._tries = 0

    def read(self, line: bytes) -> Any:
        """The line's record, or None to read it the general way."""
        if b"\\" in line:
            return None
        try:
            return self._decode(line)
        except msgspec.DecodeError:  # ValidationError included
            return None

    def attributes(self, record: Any, line: bytes) -> Attributes | None:
        """The record's attributes in the line's order, as `parse_line` reads them; None to
        read the line the general way (an integer orjson would read as a float)."""
        if self._values is None:
            return {}
        values = self._values(record)
        attributes: Attributes = {}
        for key, value in zip(
            self._extras, values if type(values) is tuple else (values,), strict=True
        ):
            if value is not UNSET:
                if type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX:
                    return None
                attributes[key] = value
        return attributes if len(attributes) < 2 else self._in_line_order(attributes, line)

    def _in_line_order(self, attributes: Attributes, line: bytes) -> Attributes | None:
        needles = self._needles
        places = [line.find(needles[key]) for key in attributes]
        if -1 in places:  # whitespace before a colon: the general path reads it
            return None
        if places == sorted(places):
            return attributes
        ordered = sorted(zip(places, attributes.items(), strict=True))
        return dict(item for _, item in ordered)

    def learn(self, obj: dict[str, Any]) -> None:
        """Learn the keys of a line the general path read, so lines like it are read here."""
        if self._tries >= LEARN_LIMIT:
            return
        self._tries += 1
        new = [
            key
            for key, value in obj.items()
            if key not in CONSUMED
            and key not in self._extras
            and (type(value) is str or type(value) is int)
            and _PLAIN_KEY.fullmatch(key) is not None
        ]
        if not new or len(self._extras) + len(new) > MAX_EXTRAS:
            return
        self._extras += new
        self._needles = {key: b'"' + key.encode() + b'":' for key in self._extras}
        self._values = attrgetter(*(f"x{at}" for at in range(len(self._extras))))
        self._decode = msgspec.json.Decoder(_record_type(self._extras)).decode
