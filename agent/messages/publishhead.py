"""The request heads the fast lane serves itself: a strict, well-formed subset of HTTP/1.1 on
the three publish routes. Anything outside it parses to None and goes to aiohttp, whose parser
and router then decide (and word any error), so the subset only has to be safe, not complete.

In the subset: `POST` with an origin-form path of A-Z a-z 0-9 . _ : - / only (no `%`, so
nothing to decode; no `.` or `..` segment, so nothing to normalise) that is exactly one of the
three routes; no query or only `ack=<letters>`; `HTTP/1.1`; header lines of a token, a colon and
printable ASCII (no obs-fold, no bare CR or LF, no bytes past 0x7e); one Content-Length of
digits within the body limit; one Host; no Transfer-Encoding, Content-Encoding, Expect or
Upgrade; at most one Content-Type, Authorization, traceparent and Connection, the last `close` or
`keep-alive`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from agent.messages.publish import BULK, DAPR, MESSAGES, PublishRequest

MAX_HEAD_BYTES = 8192
"""A longer head is not ours: aiohttp (whose line limit is about this) answers it."""
MAX_HEADER_LINES = 64

_REQUEST_LINE = re.compile(rb"POST (/[A-Za-z0-9._:/-]+)(?:\?ack=([a-z]+))? HTTP/1\.1")
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BAD_VALUE = re.compile(rb"[^\t\x20-\x7e]")
_REFUSED = frozenset((b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"))
_SINGLE = frozenset((b"host", b"content-type", b"authorization", b"traceparent", b"connection"))
_DIGITS = 10  # Content-Length digits: more is not a size this lane takes


class Head(NamedTuple):
    request: PublishRequest
    keep_alive: bool


def parse_head(head: bytes, max_body_bytes: int) -> Head | None:
    """`head` is the request line and header lines, without the blank line that ends them;
    None when the request is not the fast lane's to serve."""
    lines = head.split(b"\r\n")
    if len(lines) > MAX_HEADER_LINES or len(head) > MAX_HEAD_BYTES:
        return None
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None:
        return None
    route = _route(matched[1].decode("ascii").split("/"))
    if route is None:
        return None
    fields = _fields(lines)
    if fields is None or b"host" not in fields:  # aiohttp answers 400 without one
        return None
    length = fields.get(b"content-length")
    if length is None or not length.isdigit() or len(length) > _DIGITS:
        return None
    content_length = int(length)
    connection = fields.get(b"connection", b"keep-alive").lower()
    if content_length > max_body_bytes or connection not in (b"close", b"keep-alive"):
        return None
    traceparent = fields.get(b"traceparent")
    ack = matched[2]
    request = PublishRequest(
        route[0],
        route[1],
        {} if ack is None else {"ack": ack.decode("ascii")},
        "" if ack is None else "ack=" + ack.decode("ascii"),
        fields.get(b"content-type", b"").decode("ascii"),
        fields.get(b"authorization", b"").decode("ascii"),
        None if traceparent is None else traceparent.decode("ascii"),
        content_length,
    )
    return Head(request, connection == b"keep-alive")


def _route(parts: list[str]) -> tuple[str, str] | None:
    """(route, topic) of a path split at `/`, or None when it is none of the three."""
    if any(part in ("", ".", "..") for part in parts[1:]):
        return None
    count = len(parts)
    if count == 5:
        if parts[1] == "v1" and parts[2] == "topics" and parts[4] == "messages":
            return MESSAGES, parts[3]
        if parts[1] == "v1.0" and parts[2] == "publish":
            return DAPR, parts[4]
    elif count == 6 and parts[1:4] == ["v1.0-alpha1", "publish", "bulk"]:
        return BULK, parts[5]
    return None


def _fields(lines: list[bytes]) -> dict[bytes, bytes] | None:
    """Header names (lower case) → values; None on any line or repeat outside the subset."""
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN) or _BAD_VALUE.search(value):
            return None
        name = name.lower()
        if name in _REFUSED:
            return None
        if name in fields and (name in _SINGLE or name == b"content-length"):
            return None
        fields[name] = value.strip(b" \t")
    return fields
