"""From decoded spans to requests in the sender: dead letters, sampling, encoding, batching.

Shared by the tailing pipeline and `sidecar-agent ship`. The caller feeds one read's
`DecodeResult` to `prepare` (which writes that read's dead letters, fsync'd, and returns the
spans to send, encoded once), registers a delivery mark for them, then `add`s them under that
mark; `submit_ready` packs full or lingered batches into requests and hands them to the
sender, whose settlement (`on_settled`) credits each mark with its spans.

`prepare_lines` is `prepare` for a read's raw lines (split, or a `LineBlock` as the tailer
reads them): sent as OTLP/protobuf, they go through the decoder's direct path
(`Decoder.feed_direct` / `feed_block_direct` with `agent.spans.encode.direct`: parsed line to
span bytes, no `Span`), which hands what it cannot write to the general path, in order; the
result is the same as decoding first, span for span and byte for byte. Records handed over
are counted in `sidecar_span_decode_fallbacks_total{format}`.

Every span that enters `prepare` ends up counted exactly once: sampled out, dead-lettered as
too large for any request, or in a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Generic, NamedTuple, TypeVar

from agent.config.tree import Config, ExportConfig, SpansConfig
from agent.core.deadletter import DeadLetterFile, raw_field
from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError, RetryPolicy
from agent.spans.delivery.book import decode_lines
from agent.spans.encode.direct import DirectWriter, span_identity
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.export.batcher import SpanBatcher, encoding_for
from agent.spans.export.exporter import (
    OtlpHttpExporter,
    pack_request,
    span_count_of,
    unpack_request,
)
from agent.spans.export.sender import DeadLetterFunction, Outcome, SpanSender
from agent.spans.model import DeadLetter, DecodeResult, Span
from agent.spans.sampling import make_sampler, trace_filter_of
from agent.spans.tail.linereader import OversizeLine
from agent.spans.types import Decoder, DirectItem, EncodedSpan, LineBlock, ResourceKey

M = TypeVar("M", bound=Hashable)
Token = dict[Any, int]
SpanFilter = Callable[[Span], bool]

log: Final = logging.getLogger("agent.spans")
SPAN_LIMIT_CACHE: Final = 1024


def sampler_for(spans: SpansConfig) -> SpanFilter | None:
    """The configured sampler; None when it keeps everything (no per-span call then)."""
    if spans.sampler == "always_on":
        return None
    return make_sampler(spans.sampler, spans.sampler_arg)


def _direct_writer_for(json: bool, keep: SpanFilter | None) -> DirectWriter | None:
    """The direct path, for OTLP/protobuf and a sampler with a trace-ID decision."""
    if json:
        return None
    try:
        keep_trace = trace_filter_of(keep)
    except ValueError:
        return None  # a sampler that needs the whole span: every span is decoded
    return DirectWriter(keep_trace)


def decode_dead_letter(dead: DeadLetter, source: str) -> dict[str, Any]:
    return {"reason": dead.reason, "detail": dead.detail, "source": source, **raw_field(dead.raw)}


class Outbound(Generic[M]):
    def __init__(
        self,
        export: ExportConfig,
        resources: Resources,
        *,
        sender: SpanSender[Token],
        dead_letters: DeadLetterFile,
        metrics: Metrics,
        keep: SpanFilter | None = None,
    ) -> None:
        encoding = encoding_for(export.protocol, resources)
        self.batcher: SpanBatcher[M] = SpanBatcher(
            encoding,
            export.batch.max_spans,
            export.max_request_bytes,
            export.batch.linger,
            flush_bytes=export.batch.max_bytes,
        )
        self._gzip = export.compression == "gzip"
        self._sender = sender
        self._dead_letters = dead_letters
        self._keep = keep
        self._direct = _direct_writer_for(encoding.json, keep)
        self._span_limits: dict[ResourceKey, int] = {}
        self.spans_decoded = 0
        self.spans_sampled_out = 0
        self.spans_too_large = 0
        self._decoded_metric = metrics.counter("spans_decoded_total", "Spans decoded from input.")
        self._sampled_out_metric = metrics.counter(
            "spans_sampled_out_total", "Spans dropped by the sampler (count as delivered)."
        )
        self._fallbacks_metric = metrics.counter(
            "span_decode_fallbacks_total",
            "Span records the direct decode path handed to the general one (decoded all the "
            "same, only slower), by the file's format.",
            labels=("format",),
        )

    async def prepare(
        self,
        result: DecodeResult,
        source: str,
        extra_dead: Sequence[dict[str, Any]] = (),
    ) -> list[EncodedSpan]:
        """Write the dead letters of one read (fsync'd), return its spans to send, encoded."""
        records = [decode_dead_letter(dead, source) for dead in result.dead]
        records.extend(extra_dead)
        kept = self._encode(result.spans, source, records)
        if records:
            await self._dead_letters.write_many(records)
        return kept

    async def prepare_lines(
        self,
        decoder: Decoder,
        lines: list[bytes] | LineBlock,
        now_ns: int,
        source: str,
        extra_dead: Sequence[dict[str, Any]] = (),
    ) -> list[EncodedSpan]:
        """`prepare(decode_lines(decoder, lines, now_ns), source, extra_dead)`, through the
        decoder's direct path when the export is OTLP/protobuf."""
        direct = self._direct
        if direct is None:
            split = lines.lines() if isinstance(lines, LineBlock) else lines
            return await self.prepare(decode_lines(decoder, split, now_ns), source, extra_dead)
        into = DecodeResult()
        sampled_out = direct.sampled_out
        if isinstance(lines, LineBlock):
            items = decoder.feed_block_direct(lines, now_ns, direct, into)
        else:
            items = decoder.feed_direct(lines, now_ns, direct, into)
        records = [decode_dead_letter(item, source) for item in into.dead]
        records += extra_dead
        spans = self._take_direct(items, source, records)
        self._count(0, direct.sampled_out - sampled_out, direct=True)
        if into.fallbacks:
            self._fallbacks_metric.labels(decoder.format).inc(into.fallbacks)
        if records:
            await self._dead_letters.write_many(records)
        return spans

    def _take_direct(
        self, items: list[DirectItem], source: str, records: list[dict[str, Any]]
    ) -> list[EncodedSpan]:
        """The direct path's spans to send: the encoded ones as they are (or a dead letter if
        too large for any request), the general path's `Span`s encoded, in order."""
        spans: list[EncodedSpan] = []
        direct = 0
        last_key: ResourceKey | None = None
        span_limit = 0
        for item in items:
            if isinstance(item, Span):
                spans += self._encode([item], source, records)
                continue
            direct += 1
            if item[0] is not last_key:  # spans come in runs of one resource
                last_key = item[0]
                span_limit = self._span_limits.get(last_key) or self._span_limit(last_key)
            if len(item[1]) <= span_limit:
                spans.append(item)
            else:
                records.append(self._too_large_encoded(item[1], source))
        self._count(direct, 0)
        return spans

    def _encode(
        self, spans: list[Span], source: str, records: list[dict[str, Any]]
    ) -> list[EncodedSpan]:
        keep, encode, limits = self._keep, self.batcher.encoding.encode, self._span_limits
        encoded: list[EncodedSpan] = []
        sampled_out = 0
        for span in spans:
            if keep is not None and not keep(span):
                sampled_out += 1
                continue
            key, body = resource_key(span), encode(span)
            limit = limits.get(key)
            if limit is None:
                limit = self._span_limit(key)
            if len(body) <= limit:
                encoded.append((key, body))
            else:
                records.append(self._too_large(span, body, source))
        self._count(len(spans), sampled_out)
        return encoded

    def _count(self, decoded: int, sampled_out: int, *, direct: bool = False) -> None:
        """`direct`: the sampled-out spans were never decoded otherwise, count them as such."""
        if direct:
            decoded += sampled_out
        self.spans_decoded += decoded
        self._decoded_metric.inc(decoded)
        if sampled_out:
            self.spans_sampled_out += sampled_out
            self._sampled_out_metric.inc(sampled_out)

    def _span_limit(self, key: ResourceKey) -> int:
        if len(self._span_limits) >= SPAN_LIMIT_CACHE:
            self._span_limits.clear()  # unbounded resource sets must not grow memory
        limit = self._span_limits[key] = self.batcher.span_limit(key)
        return limit

    def _too_large(self, span: Span, body: bytes, source: str) -> dict[str, Any]:
        return self._too_large_record(span.name, span.trace_id, span.span_id, body, source)

    def _too_large_encoded(self, body: bytes, source: str) -> dict[str, Any]:
        span_bytes = self.batcher.encoding.span_bytes(body)
        name, trace_id, span_id = span_identity(span_bytes)
        return self._too_large_record(name, trace_id, span_id, body, source)

    def _too_large_record(
        self, name: str, trace_id: bytes, span_id: bytes, body: bytes, source: str
    ) -> dict[str, Any]:
        self.spans_too_large += 1
        return {
            "reason": "span_too_large",
            "detail": f"encoded span of {len(body)} bytes cannot fit a request of at most "
            f"{self.batcher.max_bytes} bytes (export.max_request_bytes)",
            "source": source,
            "span_name": name,
            "trace_id": trace_id.hex(),
            "span_id": span_id.hex(),
            **raw_field(self.batcher.encoding.span_bytes(body)),
        }

    def add(self, spans: Sequence[EncodedSpan], mark: M, now: float) -> None:
        self.batcher.add_many(spans, mark, now)

    def span_limit(self, key: ResourceKey) -> int:
        """The largest framed span of this resource a request can hold (cached)."""
        return self._span_limits.get(key) or self._span_limit(key)

    def count_encoded_elsewhere(self, decoded: int, sampled_out: int) -> None:
        """Counts spans a caller sampled and encoded itself (the OTLP receiver's pass-through,
        which keeps each span's bytes as received), as `prepare` counts its own."""
        self._count(decoded, sampled_out)

    async def submit_ready(self, now: float, *, force: bool = False) -> int:
        """Pack and submit every batch that is due; returns how many were submitted."""
        batches = self.batcher.take_ready(now, force=force)
        for batch in batches:
            body = self.batcher.encoding.build(batch.groups)
            record = pack_request(
                body, batch.span_count, gzipped=self._gzip, json=self.batcher.encoding.json
            )
            await self._sender.submit(record, dict(batch.marks))
        return len(batches)

    def next_deadline(self) -> float | None:
        return self.batcher.next_deadline()

    @property
    def pending_spans(self) -> int:
        return self.batcher.pending_spans


def span_sender(
    name: str,
    export: ExportConfig,
    exporter: OtlpHttpExporter,
    metrics: Metrics,
    *,
    on_settled: Callable[[Token, Outcome], None],
    dead_letter: DeadLetterFunction,
    queue: DiskQueue | None = None,
) -> SpanSender[Token]:
    """The sender of `exporter.push`, with the retry policy and requests in flight `export`
    asks for; without a queue a failing request is retried in memory."""
    return SpanSender(
        name,
        exporter.push,
        on_settled=on_settled,
        dead_letter=dead_letter,
        policy=RetryPolicy.from_config(export.retry),
        max_in_flight=export.max_in_flight,
        metrics=metrics,
        queue=queue,
        units_of=span_count_of,
    )


def outbound_for(
    config: Config, *, sender: SpanSender[Token], dead_letters: DeadLetterFile, metrics: Metrics
) -> Outbound[M]:
    """The Outbound `config` asks for: export settings, the service's resource, the sampler."""
    resources = Resources(config.service.name or None, config.service.resource_attributes)
    return Outbound(
        config.export,
        resources,
        sender=sender,
        dead_letters=dead_letters,
        metrics=metrics,
        keep=sampler_for(config.spans),
    )


class ExportStages(NamedTuple, Generic[M]):
    exporter: OtlpHttpExporter
    sender: SpanSender[Token]
    outbound: Outbound[M]


def export_stages(
    name: str,
    config: Config,
    metrics: Metrics,
    *,
    dead_letters: DeadLetterFile,
    on_settled: Callable[[Token, Outcome], None],
    dead_letter: DeadLetterFunction,
    queue: DiskQueue | None = None,
) -> ExportStages[M]:
    """The export side as the running pipeline and `ship` both use it: the OTLP exporter, its
    sender (with `queue`, or retrying in memory) and the Outbound in front of them."""
    exporter = OtlpHttpExporter(config.export, metrics)
    sender = span_sender(
        name,
        config.export,
        exporter,
        metrics,
        on_settled=on_settled,
        dead_letter=dead_letter,
        queue=queue,
    )
    outbound: Outbound[M] = outbound_for(
        config, sender=sender, dead_letters=dead_letters, metrics=metrics
    )
    return ExportStages(exporter, sender, outbound)


def oversize_dead_letter(line: OversizeLine, limit: int) -> dict[str, Any]:
    """The dead letter of a record over `spans.max_line_bytes`, which the line reader copied
    whole to a spill file (the same for the running pipeline and `ship`)."""
    kept = (
        "kept whole in spill_path"
        if line.whole
        else f"its first {line.spilled_bytes} bytes kept in spill_path (spans.oversize_max_bytes)"
    )
    return {
        "reason": "line_too_long",
        "detail": f"record of {line.length} bytes is over spans.max_line_bytes ({limit}); {kept}",
        "source": line.path,
        "offset": line.start_offset,
        "length": line.length,
        "spill_path": line.spill_path,
        "spilled_bytes": line.spilled_bytes,
    }


def rejected_request_dead_letter(record: bytes, error: PermanentError) -> dict[str, Any]:
    """The dead letter of a request the endpoint refused: its spans, replayable as sent."""
    try:
        request = unpack_request(record)
    except ValueError:
        return {"reason": "export_rejected", "detail": str(error), **raw_field(record)}
    return {
        "reason": "export_rejected",
        "detail": str(error),
        "spans": request.span_count,
        "content_type": request.content_type,
        **raw_field(request.plain_body()),
    }
