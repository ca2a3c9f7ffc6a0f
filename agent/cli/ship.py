"""`sidecar-agent ship FILE...`: the command line around `agent.spans.backfill.Shipper`: checks
the files, shows a byte progress bar on a terminal and prints the report.

Exit codes: 0 every span was exported, sampled out or dead-lettered (dead letters are listed);
1 some spans could not be delivered before the timeout; 2 bad usage (unreadable file).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from agent.config.tree import Config
from agent.spans.backfill import Shipper, ShipReport

EXIT_OK, EXIT_UNDELIVERED, EXIT_USAGE = 0, 1, 2


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
