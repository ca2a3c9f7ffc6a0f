"""Issue 10 item 8, tailer hazards, on real files: symlinks out of the watched directories, the
spill of a newline-free line growing without bound, and one descriptor per matched file."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from agent.core.metrics import Metrics
from agent.spans.tail.linereader import LineReader

from .conftest import TailerFactory, all_lines, collect


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"sidecar_{name}", labels) or 0.0


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def descriptors_into(directory: Path) -> int:
    """Descriptors this process holds on files under `directory`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(directory) + os.sep)
    return count


@pytest.fixture
def symlinked_logs(tmp_path: Path) -> Path:
    """logs/ok.log, logs/evil.log -> ../secret.txt, logs/alias.log -> logs/data/real.txt."""
    (tmp_path / "secret.txt").write_bytes(b"root:x:0:0 secret\n")
    logs = tmp_path / "logs"
    (logs / "data").mkdir(parents=True)
    (logs / "ok.log").write_bytes(b"ok line\n")
    (logs / "data" / "real.txt").write_bytes(b"inside line\n")
    (logs / "evil.log").symlink_to("../secret.txt")
    (logs / "alias.log").symlink_to("data/real.txt")
    return logs


async def test_symlink_to_outside_is_skipped_counted_and_logged(
    symlinked_logs: Path, make_tailer: TailerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "agent.spans.tail.tailer")
    metrics = Metrics()
    tailer = await make_tailer([str(symlinked_logs / "*.log")], metrics=metrics)
    batches = await collect(tailer, until=lambda b: len(all_lines(b)) >= 1)
    with pytest.raises(AssertionError):  # nothing else comes, however long we wait
        await collect(tailer, until=lambda b: len(all_lines(b)) >= 1, timeout=0.5)
    assert all_lines(batches) == [b"ok line"]
    assert counter(metrics, "span_files_skipped_total", reason="symlink") == 2
    skipped = {r.__dict__["path"] for r in caplog.records if r.getMessage().startswith("span log")}
    assert skipped == {str(symlinked_logs / "evil.log"), str(symlinked_logs / "alias.log")}


async def test_follow_symlinks_reads_only_targets_inside_the_watched_directories(
    symlinked_logs: Path, make_tailer: TailerFactory
) -> None:
    metrics = Metrics()
    tailer = await make_tailer(
        [str(symlinked_logs / "*.log")], metrics=metrics, follow_symlinks=True
    )
    batches = await collect(tailer, until=lambda b: len(all_lines(b)) >= 2)
    assert sorted(all_lines(batches)) == [b"inside line", b"ok line"]
    reason = "outside_watched_directories"
    assert counter(metrics, "span_files_skipped_total", reason=reason) == 1


def test_newline_free_line_spill_is_bounded_while_it_grows(tmp_path: Path) -> None:
    log_path = tmp_path / "app.log"
    log_path.write_bytes(b"")
    spill_dir = tmp_path / "spill"
    fd = os.open(log_path, os.O_RDONLY)
    reader = LineReader(
        fd, str(log_path), 0, max_line_bytes=64, oversize_dir=spill_dir, max_spill_bytes=1000
    )
    try:
        for _ in range(50):  # 50 KiB of one line, read as it is written
            append(log_path, b"x" * 1024)
            assert not reader.read(100, 256).oversize
            spilled = sum(path.stat().st_size for path in spill_dir.iterdir())
            assert spilled <= 1000
        append(log_path, b"\nnext\n")
        result = reader.read(100, 256)
        while not result.at_eof:
            more = reader.read(100, 256)
            result.unblock()
            result.lines += more.all_lines()
            result.oversize += more.oversize
            result.at_eof = more.at_eof
    finally:
        reader.close()
    assert result.all_lines() == [b"next"]
    [line] = result.oversize
    assert (line.length, line.spilled_bytes, line.whole) == (50 * 1024, 1000, False)
    assert Path(line.spill_path).read_bytes() == b"x" * 1000


async def test_thousands_of_files_hold_at_most_max_open_files(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    logs = tmp_path / "many"
    logs.mkdir()
    files = [logs / f"f{n:04d}.log" for n in range(300)]
    for number, path in enumerate(files):
        path.write_bytes(b"first %d\n" % number)
    metrics = Metrics()
    tailer = await make_tailer([str(logs / "*.log")], metrics=metrics, max_open_files=16)
    assert descriptors_into(logs) <= 16
    batches = await collect(tailer, until=lambda b: len(all_lines(b)) >= 300)
    assert descriptors_into(logs) <= 16
    # Every file grows again: parked ones are reopened by identity and read on.
    for number, path in enumerate(files):
        append(path, b"second %d\n" % number)
    # One is renamed within its directory while parked (rotation): it is found by inode.
    files[0].rename(logs / "f0000.log.1")
    batches = await collect(tailer, until=lambda b: len(all_lines(b)) >= 300, timeout=20)
    assert descriptors_into(logs) <= 16
    assert sorted(all_lines(batches)) == sorted(b"second %d" % n for n in range(300))
    assert counter(metrics, "span_files_parked_total") >= 284
    assert counter(metrics, "span_files_reopened_total") >= 284
