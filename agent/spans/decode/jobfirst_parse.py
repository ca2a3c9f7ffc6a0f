"""One JobFirst log line → a `JobFirstLine`, with one decode (the format is described in
`agent.spans.decode.jobfirst`): `parse_line` reads orjson's dict (the general path, which also
names every fault; the direct path reads the lines of a shape it has learned from such a read
without it, `agent.spans.decode.jobfirst_shapes`). Durations are Go's `time.Duration.String()`;
timestamps, RFC 3339 whole seconds, are looked up once per second.
"""

from __future__ import annotations

import re
from typing import Any, Final

from agent.spans.decode import jobfirst_scan
from agent.spans.decode.assemble import JobFirstLine
from agent.spans.decode.common import opt_str, parse_rfc3339
from agent.spans.decode.jobfirst_open import END, EVENT, START
from agent.spans.model import Attributes
from agent.spans.validate import BadRecord, attr_value

KINDS: Final = {"Span started": START, "Span event added": EVENT, "Span ended": END}
# Keys the decoder consumes; every other key on a line becomes an attribute.
CONSUMED: Final = frozenset(
    (
        "message",
        "msg",
        "timestamp",
        "time",
        "span_name",
        "trace_id",
        "span_id",
        "event_name",
        "duration",
        "status",
        "status_desc",
        "service",
        "service_name",
    )
)

_GO_DURATION: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_GO_DURATION_WHOLE: Final = re.compile(
    r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+"
)
_TIMES: Final[dict[str, int]] = {}  # a line's timestamp -> Unix nanoseconds
_TIMES_LIMIT: Final = 4096
_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_one_unit_duration: Final = jobfirst_scan.one_unit_duration  # bound: no lookup a call


def parse_go_duration(text: str) -> int:
    """Go's `time.Duration.String()` output (`1h2m3.5s`, `523.417µs`, `-1.5s`, `0s`) in ns."""
    if text in ("0", "0s"):
        return 0
    if _GO_DURATION_WHOLE.fullmatch(text) is None:
        raise BadRecord("bad_duration", f"duration {text[:40]!r} is not a Go duration")
    total = 0
    for whole, frac, unit in _GO_DURATION.findall(text):
        scale = _UNIT_NS[unit]
        total += int(whole or "0") * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    return -total if text.startswith("-") else total


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if type(value) is str and value:
        return value
    if value is None or value == "":
        raise BadRecord("missing_field", f"{key} is missing")
    raise BadRecord("bad_field", f"{key} must be a string, got {type(value).__name__}")


def _status(value: Any) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is str and value.lstrip("-").isdigit():
        return int(value)
    raise BadRecord("bad_status", f"status {value!r:.40} is not an integer")


def _extra(obj: dict[str, Any]) -> Attributes:
    # attr_value's answer for a string is the string: the call is saved for the common case.
    return {
        k: v if type(v) is str else attr_value(v, 1) for k, v in obj.items() if k not in CONSUMED
    }


def line_time(stamp: object) -> int:
    """`parse_rfc3339` of a line's timestamp, looked up: JobFirst's are whole seconds, so
    consecutive lines repeat them."""
    if type(stamp) is str:
        found = _TIMES.get(stamp)
        if found is None:
            if len(_TIMES) >= _TIMES_LIMIT:
                _TIMES.clear()  # a long backfill must not grow memory
            found = _TIMES[stamp] = parse_rfc3339(stamp, "timestamp")
        return found
    return parse_rfc3339(stamp, "timestamp")  # raises with the reason


def parse_duration(text: str) -> int:
    """`parse_go_duration`, without a regex for the one-unit spelling Go writes for every
    duration under a minute (`jobfirst_scan.one_unit_duration`); any other text (`2m3.5s`,
    `-1s`, `.5s`, a fault) takes `parse_go_duration`, which reads it or names the fault."""
    nanos = _one_unit_duration(text)
    return parse_go_duration(text) if nanos is None else nanos


def _id_text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if type(value) is str and value else _text(obj, key)


def parse_line(obj: dict[str, Any]) -> JobFirstLine | None:
    """A parsed logrus object as a `JobFirstLine`, or None if it is not a span line. The
    fields are checked in a fixed order, so a line with several faults always names the same."""
    get = obj.get
    message = obj["message"] if "message" in obj else get("msg")
    kind = KINDS.get(message) if type(message) is str else None
    if kind is None:
        return None
    trace = _id_text(obj, "trace_id")
    span = "" if kind == EVENT else _id_text(obj, "span_id")
    name = _id_text(obj, "span_name")
    stamp = obj["timestamp"] if "timestamp" in obj else get("time")
    line = JobFirstLine(kind, trace, span, name, line_time(stamp), attributes=_extra(obj))
    service = obj["service"] if "service" in obj else get("service_name")
    if type(service) is str and service:
        line.service = service
    if kind == EVENT:
        line.event_name = _id_text(obj, "event_name")
    elif kind == END:
        _end_fields(line, obj)
    return line


def _end_fields(line: JobFirstLine, obj: dict[str, Any]) -> None:
    duration = obj.get("duration")
    if duration is not None:
        if type(duration) is not str:
            raise BadRecord("bad_duration", "duration must be a Go duration string")
        line.duration_ns = parse_duration(duration)
    status = obj.get("status")
    line.status = status if type(status) is int else _status(status)
    desc = obj.get("status_desc")
    line.status_desc = desc if type(desc) is str else opt_str(desc, "status_desc")
