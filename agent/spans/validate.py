"""Validation shared by every input format: IDs, times, attribute values.

Decoders raise `BadRecord(reason, detail)` from anywhere in their parsing; the
decoder's `feed` turns it into a `DeadLetter`. The rules (docs/span-format.md has the
user-facing table):

- IDs are hex, case-insensitive, with an optional `0x` prefix; a trace ID may be
  written as a UUID (8-4-4-4-12). Shorter hex is left-padded with zeros, as Jaeger
  itself does for 64-bit trace IDs. All-zero IDs are rejected (`bad_trace_id`,
  `bad_span_id`); an all-zero or empty parent means "root span".
- Times are Unix nanoseconds with `MIN_TIME_NS <= t <= MAX_TIME_NS` (after
  1970-01-01, before 2262-04-11, the int64 limit of OTLP). `end < start` is
  `end_before_start`; a span longer than `MAX_DURATION_NS` (7 days) is
  `duration_too_long` — far likelier a unit mistake than a real span.
- Attribute values are JSON scalars, lists and maps nested at most `MAX_ATTR_DEPTH`
  levels (`bad_attribute` beyond). Integers outside int64 are kept as Python ints;
  the encoders send them as their decimal string so nothing is lost.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from agent.spans.model import Attributes, AttrValue, Span

# Final: the compiled modules that check times take them as constants.
MIN_TIME_NS: Final = 1
MAX_TIME_NS: Final = 2**63 - 1
MAX_DURATION_NS: Final = 7 * 24 * 3600 * 1_000_000_000
MAX_ATTR_DEPTH: Final = 32
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class BadRecord(Exception):
    """A record that cannot become a valid span; `reason` is the dead-letter slug."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _hex_to_bytes(text: str, size: int) -> bytes | None:
    """Strictly parse `text` as up to `size` bytes of hex, left-padding short input."""
    if len(text) > 2 and text[1] in "xX" and text[0] == "0":
        text = text[2:]
    if size == 16 and len(text) == 36 and text.count("-") == 4:
        text = text.replace("-", "")
    if not text or len(text) > size * 2 or not _HEX_DIGITS.issuperset(text):
        return None
    return bytes.fromhex(text.rjust(size * 2, "0"))


def _base64_id(text: str, size: int) -> bytes | None:
    """Protobuf's own JSON mapping writes bytes as base64; some OTLP/JSON senders do."""
    if len(text) != (size + 2) // 3 * 4 or not text.endswith("="):
        return None
    try:
        value = base64.b64decode(text, altchars=b"-_" if ("-" in text or "_" in text) else None)
    except (binascii.Error, ValueError):
        return None
    return value if len(value) == size else None


def parse_trace_id(value: object, what: str = "trace_id", *, allow_base64: bool = False) -> bytes:
    if type(value) is str and len(value) == 32:
        try:
            parsed: bytes | None = bytes.fromhex(value)
        except ValueError:
            parsed = None
        if parsed is not None and len(parsed) == 16 and parsed != _ZERO_TRACE:
            return parsed
    return _parse_id_slow(value, 16, what, "bad_trace_id", allow_base64)


def parse_span_id(
    value: object,
    what: str = "span_id",
    *,
    allow_base64: bool = False,
    reason: str = "bad_span_id",
) -> bytes:
    if type(value) is str and len(value) == 16:
        try:
            parsed: bytes | None = bytes.fromhex(value)
        except ValueError:
            parsed = None
        if parsed is not None and len(parsed) == 8 and parsed != _ZERO_SPAN:
            return parsed
    return _parse_id_slow(value, 8, what, reason, allow_base64)


def parse_parent_span_id(value: object, what: str = "parent_span_id", **kw: bool) -> bytes:
    """A parent ID; missing, empty or all-zero means a root span (returns b"")."""
    if value is None or value == "":
        return b""
    if type(value) is str and value.strip("0") in ("", "x", "X"):
        return b""
    return parse_span_id(value, what, reason="bad_parent_span_id", **kw)


def _parse_id_slow(value: object, size: int, what: str, reason: str, allow_b64: bool) -> bytes:
    if not isinstance(value, str):
        raise BadRecord(reason, f"{what} must be a hex string, got {type(value).__name__}")
    parsed = _hex_to_bytes(value.strip(), size)
    if parsed is None and allow_b64:
        parsed = _base64_id(value.strip(), size)
    if parsed is None:
        raise BadRecord(reason, f"{what} {value[:80]!r} is not {size * 2} hex digits")
    if parsed == bytes(size):
        raise BadRecord(reason, f"{what} is all zeros")
    return parsed


def check_time(value: int, what: str) -> int:
    if not MIN_TIME_NS <= value <= MAX_TIME_NS:
        raise BadRecord("bad_time", f"{what} {value} ns is outside 1970..2262")
    return value


def check_span(span: Span) -> Span:
    """The checks every decoder applies last; returns the span for chaining."""
    start, end = span.start_ns, span.end_ns
    if not (
        MIN_TIME_NS <= start <= end <= MAX_TIME_NS
        and end - start <= MAX_DURATION_NS
        and span.name
        and 0 <= span.kind <= 5
        and 0 <= span.status_code <= 2
    ):
        _explain(span)
    for event in span.events:
        if not MIN_TIME_NS <= event.time_ns <= MAX_TIME_NS:
            check_time(event.time_ns, f"event {event.name!r} time")
    return span


def _explain(span: Span) -> None:
    start, end = span.start_ns, span.end_ns
    if not (MIN_TIME_NS <= start <= MAX_TIME_NS and MIN_TIME_NS <= end <= MAX_TIME_NS):
        raise BadRecord("bad_time", f"start {start} / end {end} ns outside 1970..2262")
    if end < start:
        raise BadRecord("end_before_start", f"end {end} is {start - end} ns before start")
    if end - start > MAX_DURATION_NS:
        raise BadRecord("duration_too_long", f"duration {end - start} ns is over 7 days")
    if not span.name:
        raise BadRecord("missing_field", "span name is empty")
    if not 0 <= span.kind <= 5:
        raise BadRecord("bad_kind", f"span kind {span.kind} is not 0..5")
    raise BadRecord("bad_status", f"status code {span.status_code} is not 0..2")


_SCALARS = frozenset((str, bool, int, float, type(None)))


def attr_value(value: Any, depth: int = 0) -> AttrValue:
    """A JSON value as an attribute value (lists and maps kept, depth bounded)."""
    if type(value) in _SCALARS:
        return value  # type: ignore[no-any-return]
    if depth >= MAX_ATTR_DEPTH:
        raise BadRecord("bad_attribute", f"attribute value nested over {MAX_ATTR_DEPTH} levels")
    if type(value) is list:
        return [attr_value(item, depth + 1) for item in value]
    if type(value) is dict:
        return {str(k): attr_value(v, depth + 1) for k, v in value.items()}
    raise BadRecord("bad_attribute", f"unsupported attribute value {type(value).__name__}")


def attr_map(value: Any, what: str = "attributes") -> Attributes:
    """A JSON object as attributes; reuses the dict when every value is a scalar."""
    if type(value) is dict:
        for item in value.values():
            if type(item) not in _SCALARS:
                return {k: attr_value(v, 1) for k, v in value.items()}
        return value
    if value is None:
        return {}
    raise BadRecord("bad_field", f"{what} must be an object, got {type(value).__name__}")
