"""`auto`: the format is found per file and kept, so one file may still mix formats and other
logs.

A one-line span record (span-json, otlp-json, a one-line otel-sdk object) decides the file's
format (`decided`). From then on a line is first offered to that format: when it *fits* — a
JSON object the routing below sends to that format, under the line limit, with no top-level
`message` / `msg` key (what a JobFirst line is told by) — it is that format's,
read by its decoder (a bad field is a dead letter, as for the named format). Only a line that
does not fit is routed from scratch, which may decide again; so a file that mixes formats
keeps working, and a record of the file's format is not taken for a JobFirst line because a
nested value (a status message, say) reads `"message":"Span ...`.

Routing from scratch, cheapest check first:

1. in the middle of a multi-line object: the line belongs to it (otel-sdk);
2. a JobFirst marker (`"message":"Span `): jobfirst;
3. blank, or not starting with `{`, or no `race` (trace_id / traceId / TraceID) in
   it: not a span record — skipped and counted (the direct path tells a one-line object
   without `race`, a JobFirst file's other log lines, before any other routing);
4. a line that is just `{`: the start of a pretty-printed otel-sdk object;
5. otherwise the JSON is parsed once and dispatched on its keys: `resourceSpans` /
   `scopeSpans` → otlp-json; `SpanContext`, or `context` with `name` → otel-sdk;
   `trace_id` + `span_id` + `name` → span-json. Anything else is a log line that
   mentions a trace and is skipped; a line that looked like JSON with a trace but does
   not parse is a dead letter (`malformed_json`).

The general path (`feed_into`) and the direct path (`feed_direct`) keep the same decision by
the same rules, so they answer the same for every line; the direct path's loop for a decided
file (`_run`) pays none of the routing per line. The decision is not part of the snapshot:
after a restart the file's next span record decides again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from orjson import JSONDecodeError, loads

from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.common import (
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
)
from agent.spans.decode.direct import otlp_request
from agent.spans.decode.direct_otlpstructs import otlp_line
from agent.spans.decode.direct_sdk import go_span, python_span
from agent.spans.decode.direct_sdkstructs import sdk_line
from agent.spans.decode.jobfirst import MARKER, JobFirstDecoder, has_marker
from agent.spans.decode.otelsdk import OtelSdkDecoder, load_sdk_object, span_from_sdk_obj
from agent.spans.decode.otlpjson import OtlpJsonDecoder
from agent.spans.decode.pretty import (
    block_items,
    continued_direct,
    is_pretty_start,
    pretty_direct,
)
from agent.spans.decode.spanjson import span_from_obj
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem, LineBlock

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

_OTLP_REQUEST: Final = b'{"resourceSpans"'
_OTLP_KEYS: Final = frozenset(("resourceSpans", "resource_spans", "scopeSpans", "scope_spans"))
_NOT_SPAN_JSON: Final = _OTLP_KEYS | {"SpanContext", "context"}  # what routes a record elsewhere
_NOT_FITTING_SPAN_JSON: Final = _NOT_SPAN_JSON | {
    "message",
    "msg",
}  # ... or makes it a JobFirst line


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
        decided = self.decided
        if decided is not None:
            obj = self._fitting(line, decided)
            if obj is not None:
                self._decode(decided, obj, line, into)
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
            obj = _load(line)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))
            return
        route = _route(obj)
        if route is None:
            into.skipped += 1
            return
        self.decided = route
        self._decode(route, obj, line, into)

    def _fitting(self, line: bytes, decided: str) -> dict[str, Any] | None:
        """The line's object when it fits the file's format (module docstring), else None."""
        if len(line) > self.max_line_bytes:
            return None
        try:
            obj = loads(line)
        except JSONDecodeError:
            return None
        if type(obj) is dict and _fits(obj, decided):
            return obj
        return None

    def _decode(self, route: str, obj: dict[str, Any], raw: bytes, into: DecodeResult) -> None:
        try:
            if route == "otlp-json":
                self.otlp.decode_obj(obj, raw, into)
            elif route == "otel-sdk":
                into.spans.append(span_from_sdk_obj(obj, self.default_service))
            else:
                into.spans.append(span_from_obj(obj, self.default_service))
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, raw))

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """Lines of the file's format through `_run`, straight to the writer; any other line
        routed from scratch by `_route_direct`, which may decide the format."""
        out: list[DirectItem] = []
        self.lines_into(lines, now_ns, direct=direct, into=into, out=out, continued=True)
        return out

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        """`feed_direct` of the block's lines; while the file prints pretty-printed otel-sdk
        objects they are sliced out of the block whole (`block_direct`)."""
        return block_items(self, self.sdk, block, now_ns=now_ns, direct=direct, into=into)

    def lines_into(
        self,
        lines: Sequence[bytes],
        now_ns: int,
        *,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
        continued: bool,
    ) -> None:
        """`feed_direct` into `out`; `continued`: an otel-sdk object held may be completed
        whole from these lines (`pretty.LineRuns`)."""
        at, count = 0, len(lines)
        if continued and self.sdk.pending and count:
            at = continued_direct(self.sdk, lines, direct=direct, into=into, out=out)
        while at < count:
            decided = self.decided
            if decided is not None and not self.sdk.pending:
                at = self._run(decided, lines, at, now_ns=now_ns, direct=direct, into=into, out=out)
                if at == count:
                    break
            at = self._route_direct(lines, at, now_ns=now_ns, direct=direct, into=into, out=out)

    def _run(
        self,
        decided: str,
        lines: Sequence[bytes],
        at: int,
        *,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> int:
        """Lines from `at` that fit the decided format, each written straight from its bytes
        (Structs) or its parsed object; the index of the first line that does not fit."""
        if decided == "span-json":
            return self._run_span_json(lines, at, now_ns=now_ns, direct=direct, into=into, out=out)
        service, limit = self.default_service, self.max_line_bytes
        typed, walk, fits = _TYPED[decided], _DIRECT[decided], _FITS[decided]
        for index in range(at, len(lines)):
            line = lines[index]
            if len(line) > limit:
                return index
            if typed(line, service, direct, out):
                continue
            try:
                obj = loads(line)
            except JSONDecodeError:
                return index
            if type(obj) is not dict or "message" in obj or "msg" in obj or not fits(obj):
                return index
            if not walk(obj, service, direct, out):
                into.fallbacks += 1
                self.feed_general(line, now_ns, into, out)  # it fits: the decision stays
        return len(lines)

    def _run_span_json(
        self,
        lines: Sequence[bytes],
        at: int,
        *,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> int:
        """`_run` of a span-json file: `_fits` in four key tests, `DirectWriter.span_json`."""
        service, limit, write = self.default_service, self.max_line_bytes, direct.span_json
        for index in range(at, len(lines)):
            line = lines[index]
            if len(line) > limit:
                return index
            try:
                obj = loads(line)
            except JSONDecodeError:
                return index
            if (
                type(obj) is not dict
                or "span_id" not in obj
                or "trace_id" not in obj
                or "name" not in obj
                or not obj.keys().isdisjoint(_NOT_FITTING_SPAN_JSON)
            ):
                return index
            if not write(out, obj, service):
                into.fallbacks += 1
                self.feed_general(line, now_ns, into, out)  # it fits: the decision stays
        return len(lines)

    def _route_direct(
        self,
        lines: Sequence[bytes],
        at: int,
        *,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> int:
        """Lines from `at` routed from scratch, as `feed_into` routes them, up to the next line
        a decided format is offered first (`_run`); the index of that line."""
        sdk_pending = self.sdk.pending  # changes only when a line goes to `feed`
        for index in range(at, len(lines)):
            if index > at and not sdk_pending and self.decided is not None:
                return index
            line = lines[index]
            if not sdk_pending:
                if has_marker(line):
                    self.jobfirst.decode_direct(line, now_ns, direct, into, out)
                    continue
                if self.decided is None and _other_log_line(line, self.max_line_bytes):
                    into.skipped += 1  # `feed_into`'s answer, without its regex and copies
                    continue
                route = self._route_one(line, now_ns, direct=direct, into=into, out=out)
                if route is not None:
                    self.decided = route
                    continue
                if is_pretty_start(line):
                    return pretty_direct(
                        self.sdk, lines, index, now_ns=now_ns, direct=direct, into=into, out=out
                    )
            self.feed_general(line, now_ns, into, out)
            sdk_pending = self.sdk.pending
        return len(lines)

    def _route_one(
        self,
        line: bytes,
        now_ns: int,
        *,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> str | None:
        """The route of a one-line span record, written (straight, or through the general
        path when the direct one declines); None for any other line, which is not taken."""
        limit, service = self.max_line_bytes, self.default_service
        if line[:1] != b"{" or line.find(b"race") < 0 or len(line) > limit:  # has_marker's find
            return None
        if line.startswith(_OTLP_REQUEST) and otlp_line(line, service, direct, out):
            return "otlp-json"
        try:
            obj = loads(line)
        except JSONDecodeError:
            return None  # the general path explains, or reads NaN
        route = _route(obj) if type(obj) is dict else None
        if route is not None and not _DIRECT[route](obj, service, direct, out):
            into.fallbacks += 1
            self.feed_general(line, now_ns, into, out)
        return route

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


_DIRECT: Final = {"span-json": _span_json, "otlp-json": otlp_request, "otel-sdk": _otel_sdk}
# Straight from a line's bytes; True only for a line that fits the format (Structs forbid, or
# look for, the keys that route it elsewhere or make it a JobFirst line).
_TYPED: Final = {"otlp-json": otlp_line, "otel-sdk": sdk_line}


def _is_span_json(obj: dict[str, Any]) -> bool:
    """`_route(obj) == "span-json"`, in fewer tests (the view's isdisjoint looks up the six
    keys in the dict instead of each of the dict's keys in the set)."""
    return (
        "span_id" in obj
        and "trace_id" in obj
        and "name" in obj
        and obj.keys().isdisjoint(_NOT_SPAN_JSON)
    )


def _is_otlp_json(obj: dict[str, Any]) -> bool:
    return not obj.keys().isdisjoint(_OTLP_KEYS)


def _is_otel_sdk(obj: dict[str, Any]) -> bool:
    return _route(obj) == "otel-sdk"


_FITS: Final = {"span-json": _is_span_json, "otlp-json": _is_otlp_json, "otel-sdk": _is_otel_sdk}


def _fits(obj: dict[str, Any], decided: str) -> bool:
    """A parsed record fits the decided format: routed to it, and not a JobFirst line."""
    return "message" not in obj and "msg" not in obj and _FITS[decided](obj)


def _other_log_line(line: bytes, limit: int) -> bool:
    """A one-line JSON object (`{` to `}`) within the limit with no `race` in it, in a file
    with no format decided: what `feed_into` skips (rule 3) once it has found no marker — the
    other log lines of a JobFirst file. Told in three byte tests and one search."""
    return line[:1] == b"{" and line[-1:] == b"}" and len(line) <= limit and line.find(b"race") < 0


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
