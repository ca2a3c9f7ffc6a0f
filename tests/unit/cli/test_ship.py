"""The ship command's own part: the progress bar."""

from __future__ import annotations

import io

from rich.console import Console

from agent.cli.ship import _ProgressBar


def test_ship_progress_bar_counts_bytes_across_files() -> None:
    out = io.StringIO()
    bar = _ProgressBar(Console(file=out, force_terminal=True), total=300)
    with bar as advance:
        advance(100)
        advance(150)  # first file done
        advance(50)  # second file started
        task = bar._progress.tasks[0]
        assert task.completed == 200
