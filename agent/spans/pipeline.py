"""The span pipeline: tail span logs, decode, sample, encode, batch, export; checkpoint after.

    Tailer.next_batch ─▶ decoder (one per file) ─▶ Outbound (dead letters, sampler, encode,
    batch) ─▶ SpanSender (direct, or disk queue while the endpoint fails) ─▶ OtlpHttpExporter
          ▲                                                                   │
          └──────── DeliveryBook: marks credited on settlement, checkpoints ◀─┘

Backpressure: the read loop awaits `SpanSender.submit`, which waits for a free request slot, or,
while the endpoint is failing, for room in the disk queue. While it waits nothing more is
read: the log files are the buffer. Nothing is dropped anywhere.

Spans received over the network (`agent.receivers`) enter at `receive`: the same sampler,
resource merge, batching, sender and disk queue, settled against a `Receipt` the request
waits on instead of a file mark.

Stop (within `shutdown_timeout`): stop reading, flush the open batch, let in-flight requests
finish (spilling what cannot finish to the disk queue), then save checkpoints — so a graceful
restart re-sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.config.tree import Config
from agent.core.deadletter import DeadLetterFile
from agent.core.diskqueue.observe import queue_faults
from agent.core.diskqueue.queue import DiskQueue
from agent.core.lifecycle import STARTING, STOPPED, Health, TaskSupervisor
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError, sleep_unless_stopped
from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.container import unwrapping
from agent.spans.decode.registry import make_decoder
from agent.spans.delivery.book import (
    DecoderFactory,
    DeliveryBook,
    FileState,
    Mark,
    checkpoint_path,
)
from agent.spans.delivery.checkpoint import CheckpointStore
from agent.spans.delivery.receipt import PassThroughRules, Receipt, hand_over, pass_through_rules
from agent.spans.export.outbound import (
    ExportStages,
    Token,
    export_stages,
    oversize_dead_letter,
    rejected_request_dead_letter,
)
from agent.spans.export.sender import Outcome
from agent.spans.model import DecodeResult, Span
from agent.spans.observe import export_health, register_span_gauges
from agent.spans.tail.oversize import SpillDirectory
from agent.spans.tail.tailer import LineBatch, Tailer
from agent.spans.types import Decoder, EncodedSpan

log = logging.getLogger("agent.spans")

EXPIRE_INTERVAL = 1.0  # how often decoders are asked for spans whose end never came
MAX_READ_WAIT = 1.0
# Part of shutdown_timeout kept for closing the queue and saving checkpoints.
STOP_RESERVE = 2.0
# A queue segment must hold the largest request (gzip can grow incompressible data slightly).
QUEUE_RECORD_SLACK = 64 * 1024


def decoders_for(config: Config, exchange: OpenSpanExchange | None = None) -> DecoderFactory:
    """A decoder per file, in the format its path asks for (`spans.path_formats`, else
    `spans.format`). Decoders get no default service: the resource merge in
    `encode.resources.Resources` applies `service.name` from config to spans that name none.
    JobFirst spans open in one file can be ended in another through `exchange`."""
    spans = config.spans
    patterns = [(os.path.abspath(glob), fmt) for glob, fmt in spans.path_formats.items()]
    orphan_timeout_ns = int(spans.orphan_timeout * 1e9)

    def make(path: str) -> Decoder:
        fmt = next((fmt for glob, fmt in patterns if fnmatch.fnmatch(path, glob)), spans.format)
        decoder = make_decoder(
            fmt,
            orphan_timeout_ns=orphan_timeout_ns,
            default_service=None,
            max_line_bytes=spans.max_line_bytes,
            exchange=exchange,
        )
        return unwrapping(decoder, path, config)  # itself unless spans.container_logs is set

    return make


def queue_for(config: Config, data_dir: Path) -> DiskQueue:
    queue = config.export.queue
    largest_record = config.export.max_request_bytes + QUEUE_RECORD_SLACK
    segment = max(min(64 * 1024**2, queue.max_bytes // 8), largest_record)
    segment = min(segment, queue.max_bytes // 2)
    return DiskQueue(
        data_dir / "queue" / "spans",
        max_bytes=queue.max_bytes,
        segment_bytes=segment,
        when_full="reject",
    )


class PipelineClosedError(RuntimeError):
    """Spans offered to a pipeline that is not running (starting or stopping)."""


class SpanPipeline:
    name = "spans"

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        data_dir: Path,
        *,
        decoder_for: DecoderFactory | None = None,
    ) -> None:
        self.config = config
        self._spans = config.spans
        self._metrics = metrics
        self._data_dir = data_dir
        self._supervisor = TaskSupervisor("spans", metrics)
        self.dead_letters = DeadLetterFile(
            data_dir / "deadletter" / "spans.jsonl",
            config.spans.dead_letter_max_bytes,
            metrics,
            "spans",
        )
        self.spills = SpillDirectory(
            data_dir / "deadletter" / "oversize", config.spans.oversize_max_bytes, metrics
        )
        self.queue = queue_for(config, data_dir)
        stages: ExportStages[Mark | Receipt] = export_stages(
            "spans",
            config,
            metrics,
            dead_letters=self.dead_letters,
            on_settled=self._settled,
            dead_letter=self._dead_letter_request,
            queue=self.queue,
        )
        self.exporter, self.sender, self.outbound = stages
        self.exchange = OpenSpanExchange()
        self.book = DeliveryBook(
            CheckpointStore(checkpoint_path(data_dir)),
            decoder_for or decoders_for(config, self.exchange),
        )
        self.tailer: Tailer | None = None
        self._stopping = asyncio.Event()
        self._read_task: asyncio.Task[None] | None = None
        self._waiting_for_lines = False
        self._state = "new"
        self.lines_read = 0
        self._register_gauges(metrics)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            return
        self._state = "starting"
        await self.book.load()
        await self.exporter.start()
        await self.sender.start()
        if self._spans.paths:
            self.tailer = Tailer(
                list(self._spans.paths),
                start_at=self._spans.start_at,
                max_line_bytes=self._spans.max_line_bytes,
                poll_interval=self._spans.poll_interval,
                rotate_wait=self._spans.rotate_wait,
                offsets=self.book.offsets(),
                oversize_dir=self.spills.directory,
                metrics=self._metrics,
                follow_symlinks=self._spans.follow_symlinks,
                max_spill_bytes=self._spans.oversize_max_bytes,
                max_open_files=self._spans.max_open_files,
            )
            await self.tailer.start()
            self._read_task = self._supervisor.spawn("read", self._read_loop())
        self._supervisor.spawn("checkpoint", self._checkpoint_loop())
        self._state = "running"

    async def stop(self) -> None:
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        if self._state == "stopping":
            return
        self._state = "stopping"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(1.0, self.config.shutdown_timeout - STOP_RESERVE)
        self._stopping.set()
        self.sender.begin_close()  # a read blocked on a full queue must not hold the stop up
        await self._stop_reading(deadline)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.outbound.submit_ready(loop.time(), force=True),
                max(0.1, deadline - loop.time()),
            )
        await self.sender.close(deadline)
        if self.tailer is not None:
            await self.tailer.stop()
        await self._supervisor.close(grace=1.0)
        await self._save_checkpoints()
        await self.exporter.close()
        self._state = "stopped"
        log.info("span pipeline stopped", extra={"summary": self.summary()})

    async def _stop_reading(self, deadline: float) -> None:
        """The read loop ends at its next turn; if it is stuck (waiting for queue space), it is
        cancelled: whatever it held is not settled, so the checkpoint stays before it."""
        task = self._read_task
        if task is None or task.done():
            return
        if self._waiting_for_lines:
            # Nothing in hand: stop at once. Even lines read but not yet handed over are safe
            # to drop here, as no checkpoint mark covers them; the next run reads them again.
            task.cancel()
        loop = asyncio.get_running_loop()
        budget = max(0.1, (deadline - loop.time()) / 4)
        done, _ = await asyncio.wait({task}, timeout=budget)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    # -- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self.tailer is not None
        loop = asyncio.get_running_loop()
        next_expire = loop.time() + EXPIRE_INTERVAL
        while not self._stopping.is_set():
            self._waiting_for_lines = True
            try:
                batch = await self.tailer.next_batch(self._read_wait(loop.time(), next_expire))
            finally:
                self._waiting_for_lines = False
            if self._stopping.is_set():
                if batch is not None:
                    await self._ingest(batch, loop.time())  # read already: do not waste it
                return
            now = loop.time()
            if batch is not None:
                await self._ingest(batch, now)
            if now >= next_expire:
                await self._expire(now)
                next_expire = now + EXPIRE_INTERVAL
            await self.outbound.submit_ready(loop.time())

    def _read_wait(self, now: float, next_expire: float) -> float:
        deadline = self.outbound.next_deadline()
        wait = min(MAX_READ_WAIT, next_expire - now)
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(0.0, wait)

    async def _ingest(self, batch: LineBatch, now: float) -> None:
        state = self.book.file(batch.file_key, batch.path)
        self.lines_read += batch.line_count
        oversize = [
            oversize_dead_letter(line, self._spans.max_line_bytes) for line in batch.oversize
        ]
        handed_over = self.exchange.handed_over
        spans = await self.outbound.prepare_lines(
            state.decoder, batch.records, time.time_ns(), state.path, oversize
        )
        if oversize:
            await asyncio.to_thread(self.spills.trim)
        self._add(state, spans, batch.end_offset, now)
        if self.exchange.handed_over != handed_over:
            # Open spans moved from other files' decoders into this one: their checkpoints
            # must stop carrying them, or a restart would bring them back as orphans.
            self.book.mark_changed_decoders()
        if batch.rotated:
            state.retired = True
            ended = state.decoder.end_of_file()
            if ended.spans or ended.dead:
                await self._hand_over(state, ended, batch.end_offset, now)

    async def _expire(self, now: float) -> None:
        now_ns = time.time_ns()
        for state in self.book.files():
            if not state.decoder.pending:
                continue
            result = state.decoder.expire(now_ns)
            if result.spans or result.dead:
                await self._hand_over(state, result, state.last_end, now)

    async def _hand_over(
        self, state: FileState, result: DecodeResult, end_offset: int, now: float
    ) -> None:
        spans = await self.outbound.prepare(result, state.path)
        self._add(state, spans, end_offset, now)

    def _add(self, state: FileState, spans: list[EncodedSpan], end_offset: int, now: float) -> None:
        mark = self.book.mark(state, end_offset, len(spans))
        if spans:
            self.outbound.add(spans, mark, now)

    # -- received spans ----------------------------------------------------------------------

    def pass_through_rules(self) -> PassThroughRules | None:
        return pass_through_rules(self.config, self.outbound)

    async def receive(
        self,
        spans: list[Span],
        source: str,
        encoded: Sequence[EncodedSpan] = (),
        *,
        sampled_out: int = 0,
    ) -> Receipt:
        """Spans that arrived in a request (see `agent.spans.delivery.receipt.hand_over`)."""
        if self._state != "running":
            raise PipelineClosedError(f"span pipeline is {self._state}")
        return await hand_over(self.outbound, spans, source, encoded, sampled_out=sampled_out)

    @property
    def queue_full(self) -> bool:
        """The disk queue has no room and the endpoint is failing: new spans would wait."""
        return self.sender.waiting_for_space

    # -- delivery ----------------------------------------------------------------------------

    def _settled(self, token: Token, outcome: Outcome) -> None:
        file_marks: Token = {}
        for mark, count in token.items():
            if isinstance(mark, Receipt):
                mark.settle(count)
            else:
                file_marks[mark] = count
        if file_marks:
            self.book.settle(file_marks)

    async def _dead_letter_request(self, record: bytes, error: PermanentError) -> None:
        log.error("OTLP endpoint refused a request; dead-lettered", extra={"error": str(error)})
        await self.dead_letters.write(rejected_request_dead_letter(record, error))

    async def _checkpoint_loop(self) -> None:
        while not await sleep_unless_stopped(self._spans.checkpoint_interval, self._stopping):
            await self._save_checkpoints()

    async def _save_checkpoints(self) -> None:
        live = self.tailer.known_files().keys() if self.tailer is not None else ()
        try:
            await self.book.save(live)
        except OSError as error:
            log.error("cannot save span checkpoints", extra={"error": repr(error)})

    # -- health and status -------------------------------------------------------------------

    def health(self) -> Health:
        if self._state in ("new", "starting"):
            return STARTING
        if self._state == "stopped":
            return STOPPED
        if self._supervisor.failed:
            return self._supervisor.failure_health()
        if self.sender.failed:
            return self.sender.failure_health()
        return export_health(self.sender, self.queue, reading=self.tailer is not None)

    def summary(self) -> dict[str, Any]:
        records, spans, _, _ = self.sender.queue_depth()
        return {
            "lines_read": self.lines_read,
            "spans_decoded": self.outbound.spans_decoded,
            "spans_exported": self.exporter.spans_exported,
            "spans_sampled_out": self.outbound.spans_sampled_out,
            "spans_rejected_by_endpoint": self.exporter.spans_rejected,
            "dead_lettered": dict(self.dead_letters.by_reason),
            "spans_queued": spans,
            "batches_queued": records,
        }

    def status(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "exporter": self.exporter.status(),
            "sender": self.sender.status(),
            "tailer": self.tailer.status() if self.tailer is not None else None,
            "checkpoints": self.book.status(),
            "dead_letters": self.dead_letters.status(),
            "queue": queue_faults(self.queue.stats()),
        }

    def _register_gauges(self, metrics: Metrics) -> None:
        register_span_gauges(metrics, self.sender, self.queue, lambda: self.book.outstanding)
