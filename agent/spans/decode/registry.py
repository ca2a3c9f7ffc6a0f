"""Span input formats: one decoder instance per source file.

    decoder = make_decoder("jobfirst", orphan_timeout_ns=..., default_service="jobs-api")
    result = decoder.feed(line, now_ns)      # line without its trailing newline
    result = decoder.feed_many(lines, now_ns)  # the same for a batch, one result
    items = decoder.feed_direct(lines, now_ns, direct, into)  # spans already encoded
    result = decoder.expire(now_ns)          # JobFirst spans whose end never came
    state = decoder.snapshot()               # JSON-able; {} when nothing is pending
    decoder.restore(state)                   # on a fresh decoder, after a restart
    decoder.pending                          # 0: an offset checkpoint alone is safe

`feed` never raises on input: every line ends up as spans, dead letters (with a
reason slug) or a counted skip. Formats: `jobfirst`, `span-json`, `otlp-json`,
`otel-sdk`, `auto` — mappings and rules in docs/span-format.md. The `Decoder` contract
(and its direct path) is `agent.spans.types.Decoder`.

State is bounded: at most `max_open_spans` open JobFirst spans per file (the oldest
is exported incomplete and counted in `DecodeResult.evicted` when one more opens),
at most as many JobFirst events waiting for a span, and at most `max_object_bytes`
of one unfinished multi-line object (`object_too_large` beyond).
"""

from __future__ import annotations

from typing import Final, Literal

from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.auto import AutoDecoder
from agent.spans.decode.common import DEFAULT_MAX_LINE_BYTES
from agent.spans.decode.jobfirst import JobFirstDecoder
from agent.spans.decode.otelsdk import DEFAULT_MAX_OBJECT_BYTES, OtelSdkDecoder
from agent.spans.decode.otlpjson import OtlpJsonDecoder
from agent.spans.decode.spanjson import SpanJsonDecoder
from agent.spans.types import Decoder

FormatName = Literal["jobfirst", "span-json", "otlp-json", "otel-sdk", "auto"]
FORMATS: Final[tuple[FormatName, ...]] = ("auto", "jobfirst", "span-json", "otlp-json", "otel-sdk")


__all__ = ["FORMATS", "Decoder", "FormatName", "make_decoder"]


def make_decoder(
    fmt: str,
    *,
    orphan_timeout_ns: int,
    default_service: str | None,
    max_open_spans: int = 10_000,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    exchange: OpenSpanExchange | None = None,
) -> Decoder:
    """A decoder for one file; ValueError for an unknown format name. JobFirst assembly (in
    `jobfirst` and `auto`) shares open spans with the other files' decoders through `exchange`."""
    if fmt == "span-json":
        return SpanJsonDecoder(default_service=default_service, max_line_bytes=max_line_bytes)
    if fmt == "otlp-json":
        return OtlpJsonDecoder(default_service=default_service, max_line_bytes=max_line_bytes)
    if fmt == "otel-sdk":
        return OtelSdkDecoder(
            default_service=default_service,
            max_line_bytes=max_line_bytes,
            max_object_bytes=max_object_bytes,
        )
    if fmt == "jobfirst":
        return JobFirstDecoder(
            default_service=default_service,
            orphan_timeout_ns=orphan_timeout_ns,
            max_open_spans=max_open_spans,
            max_line_bytes=max_line_bytes,
            exchange=exchange,
        )
    if fmt == "auto":
        return AutoDecoder(
            default_service=default_service,
            orphan_timeout_ns=orphan_timeout_ns,
            max_open_spans=max_open_spans,
            max_line_bytes=max_line_bytes,
            max_object_bytes=max_object_bytes,
            exchange=exchange,
        )
    raise ValueError(f"unknown span format {fmt!r}; expected one of {', '.join(FORMATS)}")
