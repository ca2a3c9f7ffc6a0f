"""Credentials out of everything the agent shows: check-config, /status, /readyz, /metrics and
its own log lines.

Two layers. Where a value is rendered on purpose (check-config, a component's status) URLs go
through `mask_url`, which hides userinfo and every query value (tokens travel there). Under
that, every output passes a `Redactor` that knows the literal secrets of this config (the
bearer token, OTLP header values, URL passwords, user names and query values) and replaces
them wherever they appear, so an error message quoting a URL or a header cannot leak one.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

import orjson

from agent.config.tree import Config

MASK = "***"
# Secrets shorter than this are not scrubbed from free text: replacing every "a" or "1" would
# garble the output and protect nothing (check-config still masks them as values). Query
# values are often plain settings (`db=0`, `tls=true`), so only long ones count as tokens.
MIN_SCRUBBED_LENGTH = 4
MIN_QUERY_TOKEN_LENGTH = 8
# userinfo of any URL in free text, whatever the config says: scheme://user:password@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@\"'<>]+@")


def mask_url(url: str) -> str:
    """The URL with its credentials and query values replaced by ***."""
    parsed = urllib.parse.urlsplit(url)
    netloc, query = parsed.netloc, parsed.query
    if parsed.username is not None or parsed.password is not None:
        host = parsed.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parsed.port:
            host = f"{host}:{parsed.port}"
        netloc = f"{MASK}@{host}"
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{name}={MASK}" for name, _value in pairs) or MASK
    if netloc == parsed.netloc and query == parsed.query:
        return url
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc, query=query))


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be credentials, raw and percent-decoded (either may be
    printed): the password, or the user name when it comes alone (a token), and long query
    values."""
    parsed = urllib.parse.urlsplit(url)
    found = [parsed.password or parsed.username or ""]
    found += [
        value
        for _name, value in urllib.parse.parse_qsl(parsed.query)
        if len(value) >= MIN_QUERY_TOKEN_LENGTH
    ]
    found += [urllib.parse.unquote(value) for value in found]
    return found


def config_secrets(config: Config) -> list[str]:
    values = [config.proxy.auth_token]
    values += config.export.headers.values()
    values += url_secrets(config.export.endpoint)
    values += url_secrets(config.redis.url)
    return values


class Redactor:
    """Replaces known secrets, and any URL userinfo, in text about to leave the process."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= MIN_SCRUBBED_LENGTH}
        unique |= {orjson.dumps(s).decode()[1:-1] for s in unique}  # as JSON writes them
        self._secrets = sorted(unique, key=len, reverse=True)  # longest first: no partial leak
        self._pattern = (
            re.compile("|".join(re.escape(secret) for secret in self._secrets))
            if self._secrets
            else None
        )

    @classmethod
    def for_config(cls, config: Config) -> Redactor:
        return cls(config_secrets(config))

    def text(self, text: str) -> str:
        text = _USERINFO.sub(rf"\1{MASK}@", text)
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return text

    def json_bytes(self, body: bytes) -> bytes:
        """A JSON document: secrets appear in it as JSON strings escape them."""
        return self.text(body.decode()).encode()
