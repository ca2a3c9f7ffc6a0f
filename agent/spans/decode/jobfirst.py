"""`jobfirst`: the JobFirst Go services' log-based tracing, read from their logrus JSON.

JobFirst (`backend/shared/infrastructure/tracing.go`) logs three messages per span
through logrus' `JSONFormatter` (keys sorted, `timestamp` RFC 3339 whole seconds):

    {"level":"info","message":"Span started","span_id":"span_<nanos>","span_name":"GET /x",
     "timestamp":"2024-11-28T15:04:05+08:00","trace_id":"trace_<nanos>"}
    {"event_name":"cache miss","level":"info","message":"Span event added",
     "span_name":"GET /x","timestamp":"…","trace_id":"trace_<nanos>"}       # no span_id
    {"duration":"1.5ms","level":"info","message":"Span ended","span_id":"span_<nanos>",
     "span_name":"GET /x","status":0,"status_desc":"","timestamp":"…","trace_id":"…"}

Each line becomes a `JobFirstLine` with one decode (`agent.spans.decode.jobfirst_parse`):
`parse_line` on orjson's dict (the general path), or on the direct path `typed_line` straight
from the bytes through a msgspec Struct while the file's lines have only these keys. The
decoder keeps, per file and per kind of line (end lines apart), whether the Struct fits: a
line it refuses (a key the service added, such as `user_id` on end lines) turns it off for
that kind in that file, so such lines are decoded once, by orjson, not twice.
`agent.spans.decode.assemble` joins the lines into spans. Other log lines share the file: a
line without `"message":"Span ` (or logrus' default `"msg":"Span `) is skipped before any
JSON parsing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agent.spans.decode.assemble import (
    END,
    JobFirstAssembler,
    JobFirstLine,
    OpenSpanExchange,
)
from agent.spans.decode.common import (
    DEFAULT_MAX_LINE_BYTES,
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
)
from agent.spans.decode.direct_jobfirst import TraceIds, end_direct
from agent.spans.decode.jobfirst_parse import parse_line, typed_line
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem, DirectWriter

MARKERS = (b'"message":"Span ', b'"msg":"Span ')
# Either marker in one regex scan: faster than two `in` tests on the lines that have neither.
MARKER = re.compile(b"|".join(re.escape(marker) for marker in MARKERS))
# What both markers end with: a substring test (memchr-fast) rules most other lines out first.
MARKER_TAIL = b'":"Span '


def has_marker(line: bytes) -> bool:
    """`MARKER.search(line)` for a line known to hold `MARKER_TAIL`: two substring tests are
    faster than the regex once most lines have the tail."""
    return MARKERS[0] in line or MARKERS[1] in line


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
        self.traces = TraceIds()
        # [other span lines, end lines]: whether the Struct still fits this file's lines.
        self._typed = [True, True]

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
        search = MARKER.search  # one scan: in a JobFirst file most lines hold a marker
        for line in lines:
            if search(line) is None:
                into.skipped += 1
            else:
                self.decode_direct(line, now_ns, direct, into, out)
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
            parsed = self._parse(line)
            if parsed is None:
                into.skipped += 1
            elif parsed.kind != END:
                self.assembler.add(parsed, line, now_ns, into)
            elif not end_direct(self.assembler, parsed, self.traces, direct, out):
                into.fallbacks += 1
                self.assembler.add(parsed, line, now_ns, into)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))
        if into.spans:
            out.extend(into.spans)
            into.spans.clear()

    def _parse(self, line: bytes) -> JobFirstLine | None:
        """The line through the Struct while it fits this file's lines of its kind, else
        through orjson (once: a line the Struct refuses turns it off for its kind)."""
        kind = b"Span ended" in line
        if self._typed[kind]:
            parsed = typed_line(line)
            if parsed is not None:
                return parsed
            self._typed[kind] = False
        return parse_line(load_object(line))

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
