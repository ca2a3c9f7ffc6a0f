"""The Message as JobFirst's Go services marshal it, message ids, and the accept-time clock.

JobFirst's `Message` struct goes through Go's encoding/json, so its JSON is
`{"id","topic","data","headers","metadata","timestamp","retry_count"}` in that order, nil maps
as `null`, the time as RFC3339Nano (trailing zeros of the fraction trimmed) and <, >, &, U+2028
and U+2029 escaped as `\\u003c`-style sequences. We mimic the escaping: it costs a few byte
scans, and in return a message published through the proxy is byte for byte what the Go
publisher writes for the same values, so consumers that hash, compare or grep the field see no
difference (any JSON decoder reads both forms). Object keys of `data` keep the publisher's
order (Go would sort a map's keys; order carries no meaning in JSON, and sorting every payload
would cost more than everything else here). Binary values (msgpack `bin`) become base64 strings,
which is what Go does with `[]byte`.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import time
from typing import Any, NamedTuple

import msgpack
import orjson

MESSAGE_ID_MAX_CHARS = 256
_GO_ESCAPED = re.compile(rb"[<>&]|\xe2\x80[\xa8\xa9]")  # U+2028 and U+2029 in UTF-8
_GO_ESCAPES = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
}


def encode_extra(value: Any) -> Any:
    """orjson's fallback for what JSON has no type for: bytes become base64, as in Go."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, msgpack.ExtType):
        raise TypeError(f"msgpack extension type {value.code} has no JSON form")
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


def go_escape(document: bytes) -> bytes:
    """Escape the characters Go's encoder escapes. Safe on a whole document: none of them can
    appear outside a string in JSON."""
    if _GO_ESCAPED.search(document) is None:
        return document
    return _GO_ESCAPED.sub(lambda found: _GO_ESCAPES[found.group()], document)


def may_need_go_escape(body: bytes) -> bool:
    """False when no message built from this request body can contain a character Go escapes:
    none of them appears raw, and no JSON \\u escape could produce one. Lets a batch skip the
    per-message scan (one pass over the body instead of one per message)."""
    # Raw characters Go escapes (U+2028/9 start with 0xE2), or a JSON escape that may decode
    # to one. Spelled out: `in` on bytes is a fast search, a regex here is ten times slower.
    # A one-byte needle is a memchr; the two-byte `\\u` search costs eighty times as much on
    # text with many "u"s, so it runs only once a backslash was found.
    return (
        b"<" in body
        or b">" in body
        or b"&" in body
        or b"\xe2" in body
        or (b"\\" in body and b"\\u" in body)
    )


def dumps_json(value: Any, *, escape: bool = True) -> bytes:
    """JSON as Go would write it (escaping), with bytes as base64 and int map keys as strings.
    `escape=False` skips the escaping scan when the caller knows it would find nothing."""
    document = orjson.dumps(value, default=encode_extra, option=orjson.OPT_NON_STR_KEYS)
    return go_escape(document) if escape else document


def message_json(
    message_id: str,
    topic: str,
    data: Any,
    *,
    headers: dict[str, str] | None,
    metadata: dict[str, Any] | None,
    timestamp: str,
    retry_count: int = 0,
    escape: bool = True,
) -> bytes:
    """One Message, field for field as JobFirst's Go struct marshals."""
    return dumps_json(
        {
            "id": message_id,
            "topic": topic,
            "data": data,
            "headers": headers or None,
            "metadata": metadata,
            "timestamp": timestamp,
            "retry_count": retry_count,
        },
        escape=escape,
    )


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> tuple[str, bytes]:
    """Formatting the date is most of the cost of a timestamp, and it changes once a second.
    Returns the RFC3339 date and time, and the unix seconds as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)), b"%d" % seconds


def rfc3339_nano(unix_ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: `2024-11-28T15:04:05.123456789Z`, zeros trimmed."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    return _rfc3339(_utc_second(seconds)[0], nanos)


def _rfc3339(second: str, nanos: int) -> str:
    if not nanos:
        return second + "Z"
    return f"{second}.{nanos:09d}".rstrip("0") + "Z"


def is_valid_message_id(value: object) -> bool:
    """Client-chosen ids: non-empty text of printable characters, at most 256 of them."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MESSAGE_ID_MAX_CHARS
        and value.isprintable()
        and value.strip() == value
    )


class AcceptTime(NamedTuple):
    """When a request was accepted, in the three spellings the layouts need (a tuple: one is
    made per request)."""

    unix_ns: int
    rfc3339: str
    unix_seconds: bytes

    @classmethod
    def at(cls, unix_ns: int) -> AcceptTime:
        seconds, nanos = divmod(unix_ns, 1_000_000_000)
        second, unix_seconds = _utc_second(seconds)
        return cls(unix_ns, _rfc3339(second, nanos), unix_seconds)


class MessageIds:
    """Unique, time-ordered ids in JobFirst's `msg_<unix-nanos>` style.

    A suffix drawn at start keeps two agents (or two runs) apart; within a process the nanos
    only go up, so ids sort in accept order even when the clock steps back or many ids are
    handed out in one nanosecond (a batch takes consecutive values). Ids are letters, digits and
    underscores only, so they go into JSON and RESP as they are (the layouts rely on it).
    """

    def __init__(self, suffix: str | None = None) -> None:
        self.suffix = suffix if suffix is not None else secrets.token_hex(4)
        if not (self.suffix.isascii() and self.suffix.replace("_", "a").isalnum()):
            raise ValueError(f"id suffix {self.suffix!r}: letters, digits and _ only")
        self._last_ns = 0

    def reserve(self, count: int, now_ns: int) -> int:
        """The first of `count` consecutive nanos values for new ids."""
        first = max(now_ns, self._last_ns + 1)
        self._last_ns = first + count - 1
        return first

    def make(self, nanos: int) -> str:
        return f"msg_{nanos}_{self.suffix}"

    def make_many(self, count: int, now_ns: int) -> list[str]:
        first = self.reserve(count, now_ns)
        suffix = self.suffix
        return [f"msg_{nanos}_{suffix}" for nanos in range(first, first + count)]
