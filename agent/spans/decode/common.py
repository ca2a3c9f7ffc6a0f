"""Helpers shared by the format decoders: JSON loading, RFC 3339 times, enum names, optional
lists and objects, and `feed` / `feed_many` for every decoder (`LineFeeder`).

Every helper raises `BadRecord` for bad input so a decoder's `feed` has a single
place that turns failures into dead letters (`dead_letter_for`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from agent.spans.model import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    KIND_UNSPECIFIED,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    Attributes,
    DeadLetter,
    DecodeResult,
)
from agent.spans.types import DirectItem, LineBlock
from agent.spans.validate import BadRecord

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"

_KIND_NAMES: Final = {
    "unspecified": KIND_UNSPECIFIED,
    "internal": KIND_INTERNAL,
    "server": KIND_SERVER,
    "client": KIND_CLIENT,
    "producer": KIND_PRODUCER,
    "consumer": KIND_CONSUMER,
}
_STATUS_NAMES: Final = {"unset": STATUS_UNSET, "ok": STATUS_OK, "error": STATUS_ERROR}


def load_object(line: bytes) -> dict[str, Any]:
    """Parse one JSON object; a UTF-8 BOM in front is tolerated (Windows editors)."""
    if line[:3] == _BOM:
        line = line[3:]
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _json_error(line, exc) from None
    if type(value) is not dict:
        raise BadRecord("not_an_object", f"expected a JSON object, got {type(value).__name__}")
    return value


def _json_error(line: bytes, exc: orjson.JSONDecodeError) -> BadRecord:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        return BadRecord("invalid_utf8", f"byte {bad.start} is not valid UTF-8")
    if "surrogate" in str(exc):
        return BadRecord("invalid_utf8", f"string escapes a lone UTF-16 surrogate: {exc}")
    return BadRecord("malformed_json", str(exc))


def dead_letter_for(exc: Exception, raw: bytes) -> DeadLetter:
    if isinstance(exc, BadRecord):
        return DeadLetter(exc.reason, exc.detail, raw)
    # A bug in a decoder must not stop the file; it shows up as its own reason.
    return DeadLetter("internal_error", f"{type(exc).__name__}: {exc}", raw)


def line_too_long(line: bytes, limit: int) -> DeadLetter:
    detail = f"line of {len(line)} bytes is over the {limit}-byte limit"
    return DeadLetter("line_too_long", detail, line)


class LineFeeder:
    """`feed`, `feed_many`, `feed_direct` and `feed_block_direct` of the Decoder API, for a
    decoder whose `feed_into` adds what one line decodes to (spans, dead letters, a skip) to
    a result."""

    format = ""

    def feed_into(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        raise NotImplementedError

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """The general path for every line, as `Decoder.feed_direct` hands it on; decoders
        with a direct path override this."""
        result = self.feed_many(lines, now_ns)
        into.merge_counts(result)
        return list(result.spans)

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """`feed_direct` of the block's lines, split; decoders that read a block unsplit
        override this."""
        return self.feed_direct(block.lines(), now_ns, direct, into)

    def feed_general(
        self, line: bytes, now_ns: int, into: DecodeResult, out: list[DirectItem]
    ) -> None:
        """One line through the general path, inside a `feed_direct`: its spans join `out`."""
        result = DecodeResult()
        self.feed_into(line, now_ns, result)
        out.extend(result.spans)
        into.merge_counts(result)

    def feed(self, line: bytes, now_ns: int) -> DecodeResult:
        result = DecodeResult()
        self.feed_into(line, now_ns, result)
        return result

    def end_of_file(self) -> DecodeResult:
        """Nothing held, for one-line formats; JobFirst's open spans may still end in
        another file (they expire after spans.orphan_timeout)."""
        return DecodeResult()

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult:
        """`feed` for a batch of lines, with one result for all of them."""
        result = DecodeResult()
        for line in lines:
            self.feed_into(line, now_ns, result)
        return result


def pop_service_name(resource: Attributes, default: str | None) -> str | None:
    """Takes `service.name` out of a record's resource attributes (`Span.resource` never
    holds it); the service it names if a non-empty string, else `default`."""
    named = resource.pop("service.name", None)
    return named if type(named) is str and named else default


def get_str(obj: dict[str, Any], key: str, what: str | None = None) -> str:
    value = obj.get(key)
    if type(value) is str:
        return value
    name = what or key
    if value is None:
        raise BadRecord("missing_field", f"{name} is missing")
    raise BadRecord("bad_field", f"{name} must be a string, got {type(value).__name__}")


def opt_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise BadRecord("bad_field", f"{what} must be a list")
    return value


def opt_object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise BadRecord("bad_field", f"{what} must be an object")
    return value


def opt_str(value: object, what: str) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    raise BadRecord("bad_field", f"{what} must be a string, got {type(value).__name__}")


def parse_int(value: object, what: str) -> int:
    """An integer given as a JSON number or a decimal string (the proto3 JSON int64 form)."""
    if type(value) is int:
        return value
    if type(value) is str and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    if type(value) is float and value.is_integer():
        return int(value)
    raise BadRecord("bad_field", f"{what} must be an integer, got {value!r:.80}")


def parse_kind(value: object) -> int:
    """`server`, `SERVER`, `SPAN_KIND_SERVER`, `SpanKind.SERVER` or 0..5."""
    if type(value) is int and 0 <= value <= 5:
        return value
    if type(value) is str:
        name = value.lower().rpartition(".")[2].removeprefix("span_kind_")
        kind = _KIND_NAMES.get(name)
        if kind is not None:
            return kind
    raise BadRecord("bad_kind", f"span kind {value!r:.80} is not one of {', '.join(_KIND_NAMES)}")


def parse_status_code(value: object) -> int:
    """`ok`, `Error`, `STATUS_CODE_ERROR`, `StatusCode.OK` or 0..2."""
    if type(value) is int and 0 <= value <= 2:
        return value
    if type(value) is str:
        name = value.lower().rpartition(".")[2].removeprefix("status_code_")
        code = _STATUS_NAMES.get(name)
        if code is not None:
            return code
    raise BadRecord("bad_status", f"status code {value!r:.80} is not unset, ok or error")


_RFC3339: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d\d):?(\d\d))",
    re.ASCII,
)
_EPOCH_ORDINAL: Final = datetime(1970, 1, 1, tzinfo=UTC).toordinal()


_MINUTES: Final[dict[str, int]] = {}  # "YYYY-MM-DDTHH:MM" + zone -> its Unix seconds
_MINUTES_LIMIT: Final = 4096
_SECONDS: Final[dict[str, int]] = {}  # "YYYY-MM-DDTHH:MM:SS" of a UTC time -> its Unix nanoseconds
_SECONDS_LIMIT: Final = 4096


class _LastSecond:
    """The whole second of the last UTC time read through `_SECONDS`, as
    (`YYYY-MM-DDTHH:MM:SS`, its Unix nanoseconds), in one attribute: a span's times share it,
    and a `startswith` costs less than the slice and hash of a lookup. It starts as the
    epoch's, which is exact too."""

    __slots__ = ("second",)

    def __init__(self) -> None:
        self.second: tuple[str, int] = ("1970-01-01T00:00:00", 0)


_LAST_SECOND: Final = _LastSecond()


def utc_rfc3339(text: str) -> int | None:
    """`parse_rfc3339` of the spelling loggers write, `YYYY-MM-DDTHH:MM:SS`, up to 9 fraction
    digits, then `Z` or `±HH:MM`, with the minute looked up (the times in a log repeat their
    minute), and for `Z` times with a fraction the whole second (SDK span times, three a
    span, share it); None for anything else, which `parse_rfc3339` then parses or explains."""
    size = len(text)  # 1 to 9 fraction digits between "." at 19 and "Z" at the end
    if 21 < size <= 30 and ord(text[size - 1]) == _Z and ord(text[19]) == _DOT:
        last_text, last_ns = _LAST_SECOND.second
        if text.startswith(last_text):  # its whole second: the last one's (no slice, no hash)
            second_ns: int | None = last_ns
        else:
            prefix = text[:19]
            second_ns = _SECONDS.get(prefix)
            if second_ns is not None:
                _LAST_SECOND.second = (prefix, second_ns)
        if second_ns is not None:
            digits = size - 21
            nanos = _fraction(text, 20, size - 1)
            if nanos >= 0:
                return second_ns + nanos * _FRACTION_SCALE[digits]
    return _utc_rfc3339_minute(text)


_Z: Final = 0x5A
_DOT: Final = 0x2E
# What a fraction of so many digits is multiplied by to make nanoseconds (Go trims zeros).
_FRACTION_SCALE: Final[tuple[int, ...]] = tuple(10 ** (9 - digits) for digits in range(10))


def _fraction(text: str, start: int, end: int) -> int:
    """The ASCII decimal digits of `text[start:end]` as a number, -1 if another character is
    among them: read in place one by one, which compiled (`ord` of an indexed character is
    read without making a string) costs a fraction of the slice, `isdigit`, `isascii` and
    `int` calls."""
    number = 0
    for at in range(start, end):
        digit = ord(text[at]) - 48
        if not 0 <= digit <= 9:
            return -1
        number = number * 10 + digit
    return number


def _utc_rfc3339_minute(text: str) -> int | None:
    if text[-1:] == "Z":
        body, zone = text[:-1], "Z"
    elif text[-6:-5] in ("+", "-") and text[-3:-2] == ":":
        body, zone = text[:-6], text[-6:]
    else:
        return None
    size = len(body)
    if size < 19 or body[16] != ":":
        return None
    minute = body[:16] + zone
    base = _MINUTES.get(minute)
    if base is None:
        base = _minute(body[:16], zone)
        if base is None:
            return None
    second = body[17:19]
    if not (second.isascii() and second.isdigit() and second < "60"):
        return None
    nanos = 0
    if size > 19:
        fraction = body[20:]
        if body[19] != "." or not 0 < len(fraction) <= 9:
            return None
        if not (fraction.isascii() and fraction.isdigit()):
            return None
        nanos = int(fraction.ljust(9, "0"))
        if zone == "Z":
            _remember_second(body[:19], (base + int(second)) * 1_000_000_000)
    return (base + int(second)) * 1_000_000_000 + nanos


def _remember_second(prefix: str, nanos: int) -> None:
    if len(_SECONDS) >= _SECONDS_LIMIT:
        _SECONDS.clear()  # a long backfill must not grow memory
    _SECONDS[prefix] = nanos


def _minute(prefix: str, zone: str) -> int | None:
    if prefix[10:11] != "T":
        return None
    try:
        seconds = _parse_rfc3339_text(f"{prefix}:00{zone}", "time") // 1_000_000_000
    except BadRecord:
        return None
    if len(_MINUTES) >= _MINUTES_LIMIT:
        _MINUTES.clear()  # a long backfill must not grow memory
    _MINUTES[prefix + zone] = seconds
    return seconds


def parse_rfc3339(value: object, what: str) -> int:
    """An RFC 3339 time with up to nanosecond precision, as Unix nanoseconds.

    Exact (integer arithmetic, no float rounding). A zone is required: a time
    without one is ambiguous, so it is rejected rather than guessed.
    """
    if type(value) is not str:
        raise BadRecord("bad_time", f"{what} must be an RFC 3339 string, got {value!r:.80}")
    fast = utc_rfc3339(value)
    return _parse_rfc3339_text(value, what) if fast is None else fast


def _parse_rfc3339_text(value: str, what: str) -> int:
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise BadRecord("bad_time", f"{what} {value!r:.80} is not an RFC 3339 time with a zone")
    year, month, day, hour, minute, second, frac, _zulu, sign, off_h, off_m = match.groups()
    try:
        days = datetime(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        raise BadRecord("bad_time", f"{what} {value!r:.80} is not a calendar date") from None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        raise BadRecord("bad_time", f"{what} {value!r:.80} has an invalid clock time")
    seconds = days * 86400 + int(hour) * 3600 + int(minute) * 60 + int(second)
    if sign is not None:
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds += -offset if sign == "+" else offset
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds * 1_000_000_000 + nanos
