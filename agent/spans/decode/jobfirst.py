"""`jobfirst`: the JobFirst Go services' log-based tracing, read from their logrus JSON.

JobFirst (`backend/shared/infrastructure/tracing.go`) logs three messages per span
through logrus' `JSONFormatter` (keys sorted, `timestamp` RFC 3339 whole seconds):

    {"level":"info","message":"Span started","span_id":"span_<nanos>","span_name":"GET /x",
     "timestamp":"2024-11-28T15:04:05+08:00","trace_id":"trace_<nanos>"}
    {"event_name":"cache miss","level":"info","message":"Span event added",
     "span_name":"GET /x","timestamp":"…","trace_id":"trace_<nanos>"}       # no span_id
    {"duration":"1.5ms","level":"info","message":"Span ended","span_id":"span_<nanos>",
     "span_name":"GET /x","status":0,"status_desc":"","timestamp":"…","trace_id":"…"}

Each line is read once: on the general path by orjson and `parse_line`
(`agent.spans.decode.jobfirst_parse`) into a `JobFirstLine`; on the direct path, once the
file has shown a line with its keys, by one msgspec decode into a Struct of the keys this
file's lines carry (`agent.spans.decode.jobfirst_typed`), whose fields go to the assembler
and, for an end line, to the span's bytes (`direct_jobfirst`), without a dict or a
`JobFirstLine`. A line the Struct does not fit is read the general way and teaches its keys.
`agent.spans.decode.assemble` joins the lines into spans. Other log lines share the file: a
line without `"message":"Span ` (or logrus' default `"msg":"Span `) is skipped before any
JSON parsing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from agent.spans.decode import jobfirst_scan
from agent.spans.decode.assemble import JobFirstAssembler, JobFirstLine, OpenSpanExchange
from agent.spans.decode.common import (
    DEFAULT_MAX_LINE_BYTES,
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
)
from agent.spans.decode.direct_jobfirst import EndFields, TraceIds, end_direct
from agent.spans.decode.jobfirst_open import END, EVENT, START
from agent.spans.decode.jobfirst_parse import KINDS, line_time, parse_duration, parse_line
from agent.spans.decode.jobfirst_typed import (
    DURATION,
    EVENT_NAME,
    MESSAGE,
    MISSING,
    MSG,
    SERVICE,
    SERVICE_NAME,
    SPAN_ID,
    SPAN_NAME,
    STATUS,
    STATUS_DESC,
    TIME,
    TIMESTAMP,
    TRACE_ID,
    TypedLines,
)
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem
from agent.spans.validate import BadRecord

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter

MESSAGE_MARKER: Final = b'"message":"Span '  # JobFirst's logrus key
MSG_MARKER: Final = b'"msg":"Span '  # logrus' default key
MARKERS: Final = (MESSAGE_MARKER, MSG_MARKER)
# Either marker in one regex scan (the general path's test).
MARKER: Final = re.compile(b"|".join(re.escape(marker) for marker in MARKERS))
# `MARKER.search(line) is not None`, the direct paths' test: two substring searches in C with
# the native build (`jobfirst_scan`), bound once so compiled code calls it without a lookup.
has_marker: Final = jobfirst_scan.has_marker


class JobFirstDecoder(LineFeeder):
    """JobFirst logs: skips other lines cheaply, assembles spans across lines."""

    format = "jobfirst"

    def __init__(
        self,
        *,
        default_service: str | None,
        orphan_timeout_ns: int,
        max_open_spans: int = 10_000,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        exchange: OpenSpanExchange | None = None,
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.assembler = JobFirstAssembler(
            default_service=default_service,
            orphan_timeout_ns=orphan_timeout_ns,
            max_open_spans=max_open_spans,
            exchange=exchange,
        )
        self.table = self.assembler.table  # the per-line work: compiled, called directly
        self.default_service = default_service
        self.traces = TraceIds()
        self.typed = TypedLines()
        # The last timestamp a typed line read, and its time (None: none yet).
        self._stamp: str | None = None
        self._stamp_ns = 0

    def feed_into(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        if MARKER.search(line) is None:
            into.skipped += 1
        else:
            self.decode_line(line, now_ns, into)

    def decode_line(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        """`feed_into` for a line known to hold a marker (`auto` has checked)."""
        if len(line) > self.max_line_bytes:
            into.dead.append(line_too_long(line, self.max_line_bytes))
            return
        try:
            self.decode_obj(load_object(line), line, now_ns, into)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        out: list[DirectItem] = []
        for line in lines:  # in a JobFirst file most lines are span lines
            if has_marker(line):
                self.decode_direct(line, now_ns, direct, into, out)
            else:
                into.skipped += 1
        return out

    def decode_direct(
        self,
        line: bytes,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> None:
        """`decode_line` inside a `feed_direct`: an end line goes to `direct` when it can, the
        spans the assembler makes otherwise (evicted, declined) join `out`."""
        if len(line) > self.max_line_bytes:
            into.dead.append(line_too_long(line, self.max_line_bytes))
            return
        try:
            if not self._typed(line, now_ns, direct, into, out):
                self._general(line, now_ns, direct, into, out)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))
        if into.spans:
            out.extend(into.spans)
            into.spans.clear()

    def _typed(
        self,
        line: bytes,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> bool:
        """A line through this file's Struct (`jobfirst_typed`), its fields checked as
        `parse_line` checks them; False, with nothing changed, for any other line and for a
        fault, which the general path names."""
        typed = self.typed
        try:
            values = typed.read(line)
        except msgspec.DecodeError:  # ValidationError included
            return False
        message = values[MESSAGE]
        kind = KINDS.get(values[MSG] if message is MISSING else message)
        trace, name = values[TRACE_ID], values[SPAN_NAME]
        span = "" if kind == EVENT else values[SPAN_ID]  # MISSING is falsy
        if kind is None or not trace or not name or not (span or kind == EVENT):
            return False
        stamp = values[TIMESTAMP]
        if stamp is MISSING:
            stamp = values[TIME]
        attributes = typed.attributes(values, line)
        if stamp is MISSING or attributes is None:
            return False
        time_ns = self._line_time(stamp)
        if time_ns is None:
            return False
        service = values[SERVICE]
        if service is MISSING:
            service = values[SERVICE_NAME]
        if kind == START:
            evicted = self.table.start(
                trace, span, name, time_ns=time_ns, service=service or None,
                attributes=attributes, raw=line, now_ns=now_ns,
            )  # fmt: skip
            if evicted is not None:
                self.assembler.close_evicted(evicted, into)
        elif kind == EVENT:
            event_name = values[EVENT_NAME]
            if not event_name:
                return False
            self.table.event(
                trace, name, event_name, time_ns=time_ns, attributes=attributes,
                raw=line, now_ns=now_ns, into=into,
            )  # fmt: skip
        else:
            duration = values[DURATION]
            try:
                duration_ns = None if duration is MISSING else parse_duration(duration)
            except BadRecord:
                return False
            status, desc = values[STATUS], values[STATUS_DESC]
            end = (
                trace, span, name, time_ns, duration_ns, 0 if status is MISSING else status,
                "" if desc is MISSING else desc, service or None, attributes,
            )  # fmt: skip
            self._end_line(end, line, now_ns=now_ns, direct=direct, into=into, out=out)
        return True

    def _line_time(self, stamp: str) -> int | None:
        """`line_time`, the last line's first (JobFirst's whole seconds: most lines repeat it);
        None for a time the general path names."""
        if stamp == self._stamp:
            return self._stamp_ns
        try:
            time_ns = line_time(stamp)
        except BadRecord:
            return None
        self._stamp, self._stamp_ns = stamp, time_ns
        return time_ns

    def _end_line(
        self,
        end: EndFields,
        line: bytes,
        *,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> None:
        """An end line's span: written by `end_direct`, else by the assembler (a fallback)."""
        written = end_direct(
            self.table, self.traces, direct, out, end, default_service=self.default_service
        )
        if not written:
            into.fallbacks += 1
            trace, span, name, time_ns, duration, status, desc, service, attributes = end
            parsed = JobFirstLine(
                END, trace, span, name, time_ns, "", duration, status, desc, service, attributes
            )
            self.assembler.add(parsed, line, now_ns, into)

    def _general(
        self,
        line: bytes,
        now_ns: int,
        direct: DirectWriter,
        into: DecodeResult,
        out: list[DirectItem],
    ) -> None:
        """A line through orjson and `parse_line`, its shape learned for the lines after it."""
        obj = load_object(line)
        parsed = parse_line(obj)
        if parsed is None:
            into.skipped += 1
            return
        self.typed.learn(obj)
        if parsed.kind != END:
            self.assembler.add(parsed, line, now_ns, into)
            return
        end = (
            parsed.trace, parsed.span, parsed.name, parsed.time_ns, parsed.duration_ns,
            parsed.status, parsed.status_desc, parsed.service, parsed.attributes,
        )  # fmt: skip
        self._end_line(end, line, now_ns=now_ns, direct=direct, into=into, out=out)

    def decode_obj(self, obj: dict[str, Any], raw: bytes, now_ns: int, into: DecodeResult) -> None:
        parsed = parse_line(obj)
        if parsed is None:
            into.skipped += 1
        else:
            self.assembler.add(parsed, raw, now_ns, into)

    def expire(self, now_ns: int) -> DecodeResult:
        result = DecodeResult()
        self.assembler.expire(now_ns, result)
        return result

    def snapshot(self) -> dict[str, Any]:
        return self.assembler.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        self.assembler.restore(state)

    @property
    def pending(self) -> int:
        return self.assembler.pending
