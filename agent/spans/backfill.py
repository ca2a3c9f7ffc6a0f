"""What `sidecar-agent ship FILE...` does: read span log files once (gzip too) and export them.

The running pipeline's stages without tailing, checkpoints or the disk queue: the tailer's
`LineReader` (and so the same over-long-line rule: the record is copied whole to a spill file
and dead-lettered as `line_too_long` with its `spill_path`, the spill directory kept under
`spans.oversize_max_bytes`), then decode -> sample -> encode -> batch -> export through
`Outbound` and a `SpanSender`. A failing endpoint is retried in memory with the configured
backoff until it has failed for `timeout` seconds in a row. Spans still open after the last
file (a JobFirst start whose end never came) are exported marked incomplete.

A gzip file is inflated into an unlinked temporary file beside the dead letters first, since
the line reader reads by position.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from agent.config.tree import Config
from agent.core.deadletter import DeadLetterFile
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError
from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.container import unwrapping
from agent.spans.decode.registry import make_decoder
from agent.spans.export.outbound import (
    ExportStages,
    Token,
    export_stages,
    oversize_dead_letter,
    rejected_request_dead_letter,
)
from agent.spans.export.sender import Outcome
from agent.spans.tail.linereader import LineReader, ReadResult
from agent.spans.tail.oversize import SpillDirectory
from agent.spans.types import Decoder, EncodedSpan

LINES_PER_READ = 65536  # as the tailer reads
READ_CHUNK_BYTES = 256 * 1024
END_OF_TIME_NS = 2**63 - 1  # expire(): whatever is still open will never be finished now
GZIP_MAGIC = b"\x1f\x8b"
log = logging.getLogger("agent.ship")

Progress = Callable[[int], None]
"""Told the position reached in the file being read, in bytes of the file as stored."""


@dataclass
class ShipReport:
    files: int = 0
    lines_read: int = 0
    spans_decoded: int = 0
    spans_sampled_out: int = 0
    spans_exported: int = 0
    spans_rejected_by_endpoint: int = 0
    spans_undelivered: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    dead_letter_file: str = ""
    last_error: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def oversize_dir_for(dead_letter_path: Path) -> Path:
    """Where whole over-long records go: beside the dead-letter file, named after it."""
    return dead_letter_path.with_name(f"{dead_letter_path.stem}-oversize")


class PlainFile(NamedTuple):
    fd: int
    """The file's plain bytes; the caller closes it."""
    stored_per_plain: float
    """Bytes as stored per plain byte, to report progress in the stored file."""
    spill_stem: str
    """Names the spill files of its over-long records, unique per file."""


def open_plain(path: Path, scratch: Path) -> PlainFile:
    """`path` for reading by position; gzip (found by its magic, whatever the name) inflated
    into an unlinked temporary file in `scratch`. Blocking: call it from a thread."""
    with path.open("rb") as raw:
        info = os.fstat(raw.fileno())
        stem = f"ship-{info.st_dev}-{info.st_ino}"
        if raw.read(2) != GZIP_MAGIC:
            return PlainFile(os.dup(raw.fileno()), 1.0, stem)
        raw.seek(0)
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=scratch) as plain:
            with gzip.GzipFile(fileobj=raw, mode="rb") as inflating:
                shutil.copyfileobj(inflating, plain, 1 << 20)
            plain.flush()
            ratio = info.st_size / plain.tell() if plain.tell() else 1.0
            return PlainFile(os.dup(plain.fileno()), ratio, stem)


class Shipper:
    def __init__(self, config: Config, fmt: str, timeout: float, dead_letter_path: Path) -> None:
        self.config = config
        self.fmt = fmt
        self.timeout = timeout
        metrics = Metrics()
        self.report = ShipReport(dead_letter_file=str(dead_letter_path))
        self.dead_letters = DeadLetterFile(
            dead_letter_path, config.spans.dead_letter_max_bytes, metrics, "ship"
        )
        self.spills = SpillDirectory(
            oversize_dir_for(dead_letter_path), config.spans.oversize_max_bytes, metrics
        )
        stages: ExportStages[str] = export_stages(
            "ship",
            config,
            metrics,
            dead_letters=self.dead_letters,
            on_settled=self._settled,
            dead_letter=self._dead_letter_request,
        )
        self.exporter, self.sender, self.outbound = stages
        self.exchange = OpenSpanExchange()
        self._submitted = 0
        self._settled_spans = 0
        self._input_done = False
        self._all_settled = asyncio.Event()

    def decoder(self, path: Path) -> Decoder:
        spans = self.config.spans
        decoder = make_decoder(
            self.fmt,
            orphan_timeout_ns=int(spans.orphan_timeout * 1e9),
            default_service=None,
            max_line_bytes=spans.max_line_bytes,
            exchange=self.exchange,
        )
        return unwrapping(decoder, str(path), self.config)

    def _settled(self, token: Token, outcome: Outcome) -> None:
        self._settled_spans += sum(token.values())
        self._check_all_settled()

    def _check_all_settled(self) -> None:
        if self._input_done and self._settled_spans >= self._submitted:
            self._all_settled.set()

    async def _dead_letter_request(self, record: bytes, error: PermanentError) -> None:
        await self.dead_letters.write(rejected_request_dead_letter(record, error))

    async def ship(self, files: list[Path], advance: Progress) -> ShipReport:
        started = time.monotonic()
        await self.exporter.start()
        work = asyncio.create_task(self._read_all(files, advance))
        try:
            await self._watch(work)
        finally:
            loop = asyncio.get_running_loop()
            await self.sender.close(loop.time() + (1.0 if work.cancelled() else self.timeout))
            await self.exporter.close()
        self._fill_report(time.monotonic() - started)
        return self.report

    async def _read_all(self, files: list[Path], advance: Progress) -> None:
        loop = asyncio.get_running_loop()
        # Spans still open at the end of a file are closed only after the last file: a later
        # file (the next one of a rotated set, given oldest first) may hold their end lines.
        opened: list[tuple[Decoder, str]] = []
        for path in files:
            decoder = self.decoder(path)
            await self._read_file(path, decoder, advance)
            given_up = decoder.end_of_file()  # a runtime's line pieces, a half-read object
            if given_up.spans or given_up.dead:
                prepared = await self.outbound.prepare(given_up, str(path))
                await self._hand_over(str(path), prepared, loop.time())
            if decoder.pending:  # else nothing to close, nor for a later file to end
                opened.append((decoder, str(path)))
            self.report.files += 1
        for decoder, source in opened:
            ended = await self.outbound.prepare(decoder.expire(END_OF_TIME_NS), source)
            await self._hand_over(source, ended, loop.time())
        await self.outbound.submit_ready(loop.time(), force=True)
        self._input_done = True
        self._check_all_settled()
        await self._all_settled.wait()

    async def _read_file(self, path: Path, decoder: Decoder, advance: Progress) -> None:
        source = str(path)
        plain = await asyncio.to_thread(open_plain, path, self.spills.directory.parent)
        reader = LineReader(
            plain.fd,
            source,
            0,
            max_line_bytes=self.config.spans.max_line_bytes,
            oversize_dir=self.spills.directory,
        )
        reader.spill_stem = plain.spill_stem
        try:
            while True:
                result = await asyncio.to_thread(
                    reader.read_final, LINES_PER_READ, READ_CHUNK_BYTES
                )
                await self._ingest(decoder, source, result)
                advance(int(result.end_offset * plain.stored_per_plain))
                if result.final:
                    return
        finally:
            reader.close()  # closes the descriptor

    async def _ingest(self, decoder: Decoder, source: str, result: ReadResult) -> None:
        limit = self.config.spans.max_line_bytes
        oversize = [oversize_dead_letter(line, limit) for line in result.oversize]
        self.report.lines_read += result.line_count + len(oversize)
        spans = await self.outbound.prepare_lines(
            decoder, result.records, time.time_ns(), source, oversize
        )
        if oversize:
            await asyncio.to_thread(self.spills.trim)
        await self._hand_over(source, spans, asyncio.get_running_loop().time())

    async def _hand_over(self, source: str, spans: list[EncodedSpan], now: float) -> None:
        self._submitted += len(spans)
        self.outbound.add(spans, source, now)
        await self.outbound.submit_ready(now)

    async def _watch(self, work: asyncio.Task[None]) -> None:
        """Wait for the work; give up once the endpoint has failed for `timeout` in a row."""
        failing_since: float | None = None
        while not work.done():
            await asyncio.wait({work}, timeout=0.2)
            if self.sender.healthy:
                failing_since = None
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since >= self.timeout:
                log.error("giving up", extra={"error": self.sender.last_error})
                work.cancel()
                await asyncio.wait({work})
        if not work.cancelled():
            work.result()

    def _fill_report(self, seconds: float) -> None:
        report = self.report
        report.spans_decoded = self.outbound.spans_decoded
        report.spans_sampled_out = self.outbound.spans_sampled_out
        report.spans_exported = self.exporter.spans_exported
        report.spans_rejected_by_endpoint = self.exporter.spans_rejected
        report.dead_lettered = dict(self.dead_letters.by_reason)
        report.spans_undelivered = (
            self._submitted - self._settled_spans + self.outbound.pending_spans
        )
        report.last_error = self.sender.last_error
        report.seconds = round(seconds, 3)
