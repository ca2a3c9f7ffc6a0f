"""`sidecar-agent ship FILE...`: read span log files once (gzip too), export them, report.

The same decode -> sample -> encode -> batch -> export path as the running agent, without
tailing, checkpoints or the disk queue: a failing endpoint is retried in memory with the
configured backoff until it has failed for `--timeout` seconds in a row. At end of file,
spans still open (a JobFirst start whose end never came) are exported marked incomplete.

Exit codes: 0 every span was exported, sampled out or dead-lettered (dead letters are listed);
1 some spans could not be delivered before the timeout; 2 bad usage (unreadable file).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from agent.config.tree import Config
from agent.core.deadletter import DeadLetterFile, raw_field
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError
from agent.spans.decode.assemble import OpenSpanExchange
from agent.spans.decode.registry import make_decoder
from agent.spans.export.exporter import OtlpHttpExporter
from agent.spans.export.outbound import (
    Outbound,
    Token,
    outbound_for,
    rejected_request_dead_letter,
    span_sender,
)
from agent.spans.export.sender import Outcome
from agent.spans.types import Decoder, EncodedSpan

EXIT_OK, EXIT_UNDELIVERED, EXIT_USAGE = 0, 1, 2
LINES_PER_CHUNK = 4096
END_OF_TIME_NS = 2**63 - 1  # expire(): whatever is still open will never be finished now
log = logging.getLogger("agent.ship")


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


def maybe_gunzip(raw: IO[bytes]) -> IO[bytes]:
    """The file's bytes, inflated when it starts with the gzip magic (whatever its name)."""
    magic = raw.read(2)
    raw.seek(0)
    if magic != b"\x1f\x8b":
        return raw
    return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))


def read_chunks(
    stream: IO[bytes], max_line_bytes: int, source: str
) -> Iterator[tuple[list[bytes], list[dict[str, Any]]]]:
    """(lines, dead letters for over-long lines) per chunk; memory stays at one line's limit."""
    lines: list[bytes] = []
    oversize: list[dict[str, Any]] = []
    while line := stream.readline(max_line_bytes + 1):
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            oversize.append(_too_long(stream, line, max_line_bytes, source))
        else:
            lines.append(line.rstrip(b"\r\n"))
        if len(lines) >= LINES_PER_CHUNK or len(oversize) >= LINES_PER_CHUNK:
            yield lines, oversize
            lines, oversize = [], []
    if lines or oversize:
        yield lines, oversize


def _too_long(stream: IO[bytes], head: bytes, limit: int, source: str) -> dict[str, Any]:
    length = len(head)
    while not head.endswith(b"\n"):
        head = stream.readline(1 << 20)
        if not head:
            break
        length += len(head.rstrip(b"\n"))
    return {
        "reason": "line_too_long",
        "detail": f"record of {length} bytes is over spans.max_line_bytes ({limit}); "
        "its first 1 KiB is kept",
        "source": source,
        "length": length,
        **raw_field(head[:1024]),
    }


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
        self.exporter = OtlpHttpExporter(config.export, metrics)
        self.sender = span_sender(
            "ship",
            config.export,
            self.exporter,
            metrics,
            on_settled=self._settled,
            dead_letter=self._dead_letter_request,
        )
        self.outbound: Outbound[str] = outbound_for(
            config, sender=self.sender, dead_letters=self.dead_letters, metrics=metrics
        )
        self.exchange = OpenSpanExchange()
        self._submitted = 0
        self._settled_spans = 0
        self._input_done = False
        self._all_settled = asyncio.Event()

    def decoder(self) -> Decoder:
        return make_decoder(
            self.fmt,
            orphan_timeout_ns=int(self.config.spans.orphan_timeout * 1e9),
            default_service=None,
            max_line_bytes=self.config.spans.max_line_bytes,
            exchange=self.exchange,
        )

    def _settled(self, token: Token, outcome: Outcome) -> None:
        self._settled_spans += sum(token.values())
        self._check_all_settled()

    def _check_all_settled(self) -> None:
        if self._input_done and self._settled_spans >= self._submitted:
            self._all_settled.set()

    async def _dead_letter_request(self, record: bytes, error: PermanentError) -> None:
        await self.dead_letters.write(rejected_request_dead_letter(record, error))

    async def ship(self, files: list[Path], advance: Callable[[int], None]) -> ShipReport:
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

    async def _read_all(self, files: list[Path], advance: Callable[[int], None]) -> None:
        loop = asyncio.get_running_loop()
        limit = self.config.spans.max_line_bytes
        # Spans still open at the end of a file are closed only after the last file: a later
        # file (the next one of a rotated set, given oldest first) may hold their end lines.
        opened: list[tuple[Decoder, str]] = []
        for path in files:
            decoder, source = self.decoder(), str(path)
            with path.open("rb") as raw, maybe_gunzip(raw) as stream:
                for lines, oversize in read_chunks(stream, limit, source):
                    self.report.lines_read += len(lines) + len(oversize)
                    spans = await self.outbound.prepare_lines(
                        decoder, lines, time.time_ns(), source, oversize
                    )
                    await self._hand_over(source, spans, loop.time())
                    advance(raw.tell())
            if decoder.pending:  # else nothing to close, nor for a later file to end
                opened.append((decoder, source))
            self.report.files += 1
        for decoder, source in opened:
            ended = await self.outbound.prepare(decoder.expire(END_OF_TIME_NS), source)
            await self._hand_over(source, ended, loop.time())
        await self.outbound.submit_ready(loop.time(), force=True)
        self._input_done = True
        self._check_all_settled()
        await self._all_settled.wait()

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


# --- the command ----------------------------------------------------------------------------


def run_ship(
    config: Config,
    files: list[str],
    *,
    fmt: str | None,
    timeout: float,
    dead_letter_file: str | None,
    as_json: bool,
) -> int:
    paths = [Path(name) for name in files]
    unreadable = [str(p) for p in paths if not p.is_file() or not _readable(p)]
    if unreadable:
        sys.stderr.write(f"cannot read: {', '.join(unreadable)}\n")
        return EXIT_USAGE
    target = Path(dead_letter_file or Path(config.data_dir) / "deadletter" / "ship-spans.jsonl")
    shipper = Shipper(config, fmt or config.spans.format, timeout, target)
    console = Console()
    with _progress(console, sum(p.stat().st_size for p in paths)) as advance:
        report = asyncio.run(shipper.ship(paths, advance))
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_report(console, report)
    return EXIT_OK if report.spans_undelivered == 0 else EXIT_UNDELIVERED


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


def _progress(console: Console, total: int) -> AbstractContextManager[Callable[[int], None]]:
    """A byte progress bar on a terminal; a no-op elsewhere (pipes, CI logs)."""
    if not sys.stdout.isatty():
        return nullcontext(lambda done: None)
    return _ProgressBar(console, total)


class _ProgressBar:
    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("shipping"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("ship", total=total)
        self._base = 0
        self._last = 0

    def __enter__(self) -> Callable[[int], None]:
        self._progress.start()
        return self._advance

    def _advance(self, position: int) -> None:
        if position < self._last:  # the next file started
            self._base += self._last
        self._last = position
        self._progress.update(self._task, completed=self._base + position)

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()


def _print_report(console: Console, report: ShipReport) -> None:
    rows = [
        ("files", report.files),
        ("lines read", report.lines_read),
        ("spans decoded", report.spans_decoded),
        ("spans exported", report.spans_exported),
        ("spans sampled out", report.spans_sampled_out),
        ("spans rejected by the endpoint (partial success)", report.spans_rejected_by_endpoint),
        ("spans not delivered", report.spans_undelivered),
    ]
    for label, value in rows:
        console.print(f"{label}: {value:,}", highlight=False)
    dead = sum(report.dead_lettered.values())
    console.print(f"dead-lettered: {dead:,}", highlight=False)
    for reason, count in sorted(report.dead_lettered.items()):
        console.print(f"  {reason}: {count:,}", highlight=False)
    if dead:
        console.print(f"dead letters are in {report.dead_letter_file}", highlight=False)
    if report.spans_undelivered:
        console.print(f"[red]endpoint failing: {report.last_error}[/]")
    console.print(f"took {report.seconds:.1f}s", highlight=False)
