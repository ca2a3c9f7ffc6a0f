from __future__ import annotations

import os
from pathlib import Path

from agent.core.metrics import Metrics
from agent.spans.tail.oversize import SpillDirectory


def spill(directory: Path, name: str, size: int, age: int) -> Path:
    path = directory / name
    path.write_bytes(b"x" * size)
    os.utime(path, ns=(1_000_000_000 * age, 1_000_000_000 * age))
    return path


def test_oldest_spills_go_first_until_the_rest_fit(tmp_path: Path) -> None:
    metrics = Metrics()
    oldest = spill(tmp_path, "a.line", 400, age=1)
    middle = spill(tmp_path, "b.line", 400, age=2)
    newest = spill(tmp_path, "c.line", 400, age=3)
    spills = SpillDirectory(tmp_path, max_bytes=900, metrics=metrics)
    assert spills.trim() == 1
    assert not oldest.exists() and middle.exists() and newest.exists()
    assert "sidecar_span_oversize_spills_discarded_total 1.0" in metrics.render().decode()


def test_the_newest_spill_is_kept_even_alone_over_the_limit(tmp_path: Path) -> None:
    spill(tmp_path, "a.line", 500, age=1)
    newest = spill(tmp_path, "b.line", 5000, age=2)
    spills = SpillDirectory(tmp_path, max_bytes=100, metrics=Metrics())
    assert spills.trim() == 1
    assert [p.name for p in tmp_path.iterdir()] == [newest.name]


def test_missing_directory_and_small_totals_delete_nothing(tmp_path: Path) -> None:
    assert SpillDirectory(tmp_path / "none", 10, Metrics()).trim() == 0
    spill(tmp_path, "a.line", 10, age=1)
    assert SpillDirectory(tmp_path, 1000, Metrics()).trim() == 0
