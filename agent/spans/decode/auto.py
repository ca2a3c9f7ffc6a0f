"""`auto`: the format is detected per line, so one file may mix formats and other logs.

Order of checks, cheapest first:

1. in the middle of a multi-line object: the line belongs to it (otel-sdk);
2. a JobFirst marker (`"message":"Span `): jobfirst;
3. blank, or not starting with `{`, or no `race` (trace_id / traceId / TraceID) in
   it: not a span record — skipped and counted;
4. a line that is just `{`: the start of a pretty-printed otel-sdk object;
5. otherwise the JSON is parsed once and dispatched on its keys: `resourceSpans` /
   `scopeSpans` → otlp-json; `SpanContext`, or `context` with `name` → otel-sdk;
   `trace_id` + `span_id` + `name` → span-json. Anything else is a log line that
   mentions a trace and is skipped; a line that looked like JSON with a trace but does
   not parse is a dead letter (`malformed_json`).

The direct path (`feed_direct`) answers the same for every line, but keeps the file's
format once a span record has decided it (`decided`): a span-json record is recognised by
one test of its keys, and only a record that does not fit is routed from scratch, which
decides again, so a file that mixes formats keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orjson import JSONDecodeError, loads

from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.common import (
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
)
from agent.spans.decode.direct import otlp_line, otlp_request
from agent.spans.decode.direct_sdk import go_span, python_span
from agent.spans.decode.direct_sdkstructs import sdk_line
from agent.spans.decode.jobfirst import MARKER, MARKER_TAIL, JobFirstDecoder, has_marker
from agent.spans.decode.otelsdk import OtelSdkDecoder, load_sdk_object, span_from_sdk_obj
from agent.spans.decode.otlpjson import OtlpJsonDecoder
from agent.spans.decode.spanjson import span_from_obj
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem, DirectWriter

_OTLP_REQUEST = b'{"resourceSpans"'
_OTLP_KEYS = frozenset(("resourceSpans", "resource_spans", "scopeSpans", "scope_spans"))
_NOT_SPAN_JSON = _OTLP_KEYS | {"SpanContext", "context"}  # what routes a record elsewhere


class AutoDecoder(LineFeeder):
    format = "auto"

    def __init__(
        self,
        *,
        default_service: str | None,
        orphan_timeout_ns: int,
        max_open_spans: int,
        max_line_bytes: int,
        max_object_bytes: int,
        exchange: OpenSpanExchange | None = None,
    ) -> None:
        self.default_service = default_service
        self.max_line_bytes = max_line_bytes
        self.jobfirst = JobFirstDecoder(
            default_service=default_service,
            orphan_timeout_ns=orphan_timeout_ns,
            max_open_spans=max_open_spans,
            max_line_bytes=max_line_bytes,
            exchange=exchange,
        )
        self.otlp = OtlpJsonDecoder(default_service=default_service, max_line_bytes=max_line_bytes)
        self.sdk = OtelSdkDecoder(
            default_service=default_service,
            max_line_bytes=max_line_bytes,
            max_object_bytes=max_object_bytes,
        )
        self.decided: str | None = None
        """The route of the file's latest span record on the direct path, tried first."""

    def feed_into(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        if self.sdk.pending:
            self.sdk.feed_into(line, now_ns, into)
            return
        if MARKER.search(line):
            self.jobfirst.decode_line(line, now_ns, into)
            return
        if len(line) > self.max_line_bytes:
            into.dead.append(line_too_long(line, self.max_line_bytes))
            return
        stripped = line.strip()
        if stripped == b"{":
            self.sdk.feed_into(line, now_ns, into)
            return
        if stripped[:1] != b"{" or b"race" not in line:
            into.skipped += 1
            return
        try:
            self._dispatch(_load(line), line, now_ns, into)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))

    def _dispatch(self, obj: dict[str, Any], raw: bytes, now_ns: int, into: DecodeResult) -> None:
        route = _route(obj)
        if route == "otlp-json":
            self.otlp.decode_obj(obj, raw, into)
        elif route == "otel-sdk":
            into.spans.append(span_from_sdk_obj(obj, self.default_service))
        elif route == "span-json":
            into.spans.append(span_from_obj(obj, self.default_service))
        else:
            into.skipped += 1

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """A one-line span record of any format straight to the writer, routed as `feed`
        routes it; JobFirst lines through JobFirst's direct path; multi-line objects and other
        lines through `feed`. The file's format is decided by its first span record and kept:
        a span-json record is recognised by one test of its keys, and only a record that does
        not fit goes through the whole routing (and decides again)."""
        out: list[DirectItem] = []
        service, limit = self.default_service, self.max_line_bytes
        sdk_pending = self.sdk.pending  # changes only when a line goes to `feed`
        decided = self.decided
        for line in lines:
            if not sdk_pending:
                if MARKER_TAIL in line and has_marker(line):
                    self.jobfirst.decode_direct(line, now_ns, direct, into, out)
                    continue
                obj = None
                if line[:1] == b"{" and b"race" in line and len(line) <= limit:
                    typed = _typed_direct(line, decided, service, direct, out)
                    if typed is not None:
                        decided = typed
                        continue
                    try:
                        obj = loads(line)
                    except JSONDecodeError:
                        obj = None  # the general path explains, or reads NaN
                if type(obj) is dict:
                    if decided == "span-json" and _is_span_json(obj):
                        if direct.span_json(out, obj, service):
                            continue
                        into.fallbacks += 1
                    else:
                        route = _route(obj)
                        if route is not None:
                            decided = route
                            if _DIRECT[route](obj, service, direct, out):
                                continue
                            into.fallbacks += 1
            self.feed_general(line, now_ns, into, out)
            sdk_pending = self.sdk.pending
        self.decided = decided
        return out

    def expire(self, now_ns: int) -> DecodeResult:
        return self.jobfirst.expire(now_ns)

    def end_of_file(self) -> DecodeResult:
        return self.sdk.end_of_file()  # JobFirst's open spans may still end in another file

    def snapshot(self) -> dict[str, Any]:
        state = {"jobfirst": self.jobfirst.snapshot(), "otel-sdk": self.sdk.snapshot()}
        return {name: part for name, part in state.items() if part}

    def restore(self, state: dict[str, Any]) -> None:
        self.jobfirst.restore(state.get("jobfirst", {}))
        self.sdk.restore(state.get("otel-sdk", {}))

    @property
    def pending(self) -> int:
        return self.jobfirst.pending + self.sdk.pending


def _typed_direct(
    line: bytes,
    decided: str | None,
    default_service: str | None,
    direct: DirectWriter,
    out: list[DirectItem],
) -> str | None:
    """The route of a line written straight from its bytes through Structs, or None (nothing
    written): OTLP/JSON requests, and SDK objects once the file has shown one."""
    if line.startswith(_OTLP_REQUEST) and otlp_line(line, default_service, direct, out):
        return "otlp-json"
    if decided == "otel-sdk" and sdk_line(line, default_service, direct, out):
        return "otel-sdk"
    return None


def _span_json(
    obj: dict[str, Any], default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    return direct.span_json(out, obj, default_service)


def _otel_sdk(
    obj: dict[str, Any], default_service: str | None, direct: DirectWriter, out: list[DirectItem]
) -> bool:
    if "SpanContext" in obj:
        return go_span(obj, default_service, direct, out)
    return python_span(obj, default_service, direct, out)


_DIRECT = {"span-json": _span_json, "otlp-json": otlp_request, "otel-sdk": _otel_sdk}


def _is_span_json(obj: dict[str, Any]) -> bool:
    """`_route(obj) == "span-json"`, in fewer tests (the view's isdisjoint looks up the six
    keys in the dict instead of each of the dict's keys in the set)."""
    return (
        "span_id" in obj
        and "trace_id" in obj
        and "name" in obj
        and obj.keys().isdisjoint(_NOT_SPAN_JSON)
    )


def _route(obj: dict[str, Any]) -> str | None:
    """The format a parsed single-line record is in, by its keys; None: not a span."""
    if not obj.keys().isdisjoint(_OTLP_KEYS):
        return "otlp-json"
    if "SpanContext" in obj or ("context" in obj and "name" in obj):
        return "otel-sdk"
    if "span_id" in obj and "name" in obj and "trace_id" in obj:
        return "span-json"
    return None


def _load(line: bytes) -> dict[str, Any]:
    try:
        obj = loads(line)
    except JSONDecodeError:
        # Python's json writes NaN/Infinity: otel-sdk output may hold them, other formats not.
        lenient = load_sdk_object(line)  # raises with the precise reason unless that was all
        if _route(lenient) == "otel-sdk":
            return lenient
        return load_object(line)  # raises with the precise reason
    if type(obj) is not dict:
        return load_object(line)
    return obj
