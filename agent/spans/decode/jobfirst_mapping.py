"""How a JobFirst span's fields map to OTLP's: its W3C IDs, its start time, its attributes and
kind (the rules are in `agent.spans.decode.assemble`'s docstring). Shared by the assembler's
general path and the direct path (`direct_jobfirst`), so both give every span the same fields.
"""

from __future__ import annotations

import re
from hashlib import blake2b
from typing import Final

from agent.spans.decode import jobfirst_scan
from agent.spans.model import KIND_INTERNAL, KIND_SERVER, Attributes
from agent.spans.validate import MAX_TIME_NS, MIN_TIME_NS

TRACE_ID_KEY, SPAN_ID_KEY = "jobfirst.trace_id", "jobfirst.span_id"
_DAY_NS: Final = 86_400 * 1_000_000_000
_HTTP_NAME: Final = re.compile(r"(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) (/\S*)")
_TRACE_HASHER: Final = blake2b(digest_size=16, person=b"jobfirst.trace")
_SPAN_HASHER: Final = blake2b(digest_size=8, person=b"jobfirst.span")
# The hasher's methods, bound once: compiled code calls them without a lookup by name.
_copy: Final = blake2b.copy
_update: Final = blake2b.update
_digest: Final = blake2b.digest
_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
_prefixed_digits: Final = jobfirst_scan.prefixed_digits  # bound: no lookup a call


def w3c_trace_id(trace: str) -> bytes:
    hasher = _copy(_TRACE_HASHER)
    _update(hasher, trace.encode())
    digest = _digest(hasher)
    return digest if digest != _ZERO_TRACE_ID else digest[:-1] + b"\x01"


def w3c_span_id(trace: str, span: str) -> bytes:
    # The trace is part of the input so equal span strings in two traces stay distinct.
    hasher = _copy(_SPAN_HASHER)
    _update(hasher, f"{trace}\x00{span}".encode())
    digest = _digest(hasher)
    return digest if digest != _ZERO_SPAN_ID else digest[:-1] + b"\x01"


def _id_nanos(text: str, prefix: str) -> int | None:
    nanos = _prefixed_digits(text, prefix)
    if nanos is not None and MIN_TIME_NS <= nanos <= MAX_TIME_NS:
        return nanos
    return None


def start_time(span: str, trace: str, around_ns: int) -> int:
    """The span's start: ID nanos near `around_ns` (the expected start), else `around_ns`."""
    nanos = _id_nanos(span, "span_")
    if nanos is None or abs(nanos - around_ns) > _DAY_NS:
        nanos = _id_nanos(trace, "trace_")
        if nanos is None or abs(nanos - around_ns) > _DAY_NS:
            return around_ns
    return nanos


def span_attributes(
    trace: str, span: str, name: str, extra: Attributes, more: Attributes | None = None
) -> tuple[Attributes, int]:
    """A finished span's attributes (the original IDs, then `extra` and `more`: its lines'
    fields, the start line's then the end line's) and its kind: SERVER with `http.*` for the
    Gin middleware's "GET /path" names."""
    attributes: Attributes = {TRACE_ID_KEY: trace, SPAN_ID_KEY: span, **extra}
    if more:
        attributes.update(more)
    http = http_parts(name)
    if http is None:
        return attributes, KIND_INTERNAL
    attributes.setdefault("http.method", http[0])
    attributes.setdefault("http.route", http[1])
    return attributes, KIND_SERVER


_HTTP_PARTS: Final[
    dict[str, tuple[str, str] | None]
] = {}  # span name -> (method, route), looked up
_HTTP_PARTS_LIMIT: Final = 4096


def http_parts(name: str) -> tuple[str, str] | None:
    """The method and route of a "GET /path" span name (None for other names), looked up:
    a service's span names repeat."""
    if name in _HTTP_PARTS:
        return _HTTP_PARTS[name]
    http = _HTTP_NAME.fullmatch(name)
    parts = None if http is None else (http.group(1), http.group(2))
    if len(_HTTP_PARTS) >= _HTTP_PARTS_LIMIT:
        _HTTP_PARTS.clear()  # unbounded span names must not grow memory
    _HTTP_PARTS[name] = parts
    return parts
