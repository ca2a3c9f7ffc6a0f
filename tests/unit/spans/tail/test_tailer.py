"""The Tailer on real files: discovery, start positions, identity, fairness, notifications."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.core.metrics import Metrics
from agent.spans.tail import watcher
from agent.spans.tail.tailer import LineBatch

from .conftest import TailerFactory, all_lines, collect


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def counter(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(f"sidecar_{name}")
    return value or 0.0


def has_lines(count: int) -> Any:
    return lambda batches: len(all_lines(batches)) >= count


async def test_files_present_at_first_start_honour_start_at_end_later_ones_start_at_zero(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    old = tmp_path / "old.log"
    old.write_bytes(b"history 1\nhistory 2\n")
    tailer = await make_tailer([str(tmp_path / "*.log")], start_at="end")
    announced = await collect(tailer, until=lambda b: len(b) >= 1)
    # An empty batch records the skipped-to offset so a restart will not skip again.
    assert announced[0].all_lines() == []
    assert announced[0].end_offset == old.stat().st_size
    append(old, b"fresh\n")
    new = tmp_path / "new.log"
    new.write_bytes(b"new 1\nnew 2\n")
    batches = await collect(tailer, until=has_lines(3))
    by_path = {b.path: b.all_lines() for b in batches if b.line_count}
    assert by_path == {str(old): [b"fresh"], str(new): [b"new 1", b"new 2"]}


async def test_start_at_end_skips_a_half_written_line_not_just_bytes(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"history\nhalf of a li")
    tailer = await make_tailer([str(tmp_path / "*.log")], start_at="end")
    append(path, b"ne written before start\nafter start\n")
    batches = await collect(tailer, until=has_lines(1))
    assert all_lines(batches) == [b"after start"]


async def test_checkpointed_offsets_resume_and_uncheckpointed_files_start_at_zero(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"a1\na2\n")
    second.write_bytes(b"b1\n")
    tailer = await make_tailer([str(tmp_path / "*.log")])
    batches = await collect(tailer, until=has_lines(3))
    keys = {b.path: b.file_key for b in batches}
    await tailer.stop()
    append(first, b"a3\n")
    append(second, b"b2\n")
    # start_at: end does not apply once checkpoints exist: b.log has none here, so it is new.
    resumed = await make_tailer(
        [str(tmp_path / "*.log")], start_at="end", offsets={keys[str(first)]: 3}
    )
    batches = await collect(resumed, until=has_lines(4))
    by_path = {b.path: b.all_lines() for b in batches if b.line_count}
    assert by_path == {str(first): [b"a2", b"a3"], str(second): [b"b1", b"b2"]}


async def test_identical_first_lines_on_different_inodes_are_different_files(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    header = b'{"service":"api","msg":"logger started"}\n'
    for name in ("one.log", "two.log"):
        (tmp_path / name).write_bytes(header + name.encode() + b"\n")
    tailer = await make_tailer([str(tmp_path / "*.log")])
    batches = await collect(tailer, until=has_lines(4))
    assert len({b.file_key for b in batches}) == 2
    assert sorted(all_lines(batches)) == sorted([header[:-1]] * 2 + [b"one.log", b"two.log"])


async def test_same_inode_with_other_content_is_a_new_file_read_from_zero(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"first generation\n" + b"x\n" * 10)
    tailer = await make_tailer([str(tmp_path / "*.log")])
    old_key = (await collect(tailer, until=has_lines(11)))[0].file_key
    await tailer.stop()
    # Rewritten in place while stopped, longer than before: only the first line tells.
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(b"second generation\n" + b"y\n" * 20)
    resumed = await make_tailer([str(tmp_path / "*.log")], offsets={old_key: 37})
    batches = await collect(resumed, until=has_lines(21))
    assert all_lines(batches) == [b"second generation"] + [b"y"] * 20
    assert batches[0].file_key != old_key


async def test_truncated_and_regrown_past_the_offset_is_still_read_again(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"generation 1\n")
    metrics = Metrics()
    tailer = await make_tailer([str(path)], metrics=metrics, poll_interval=30.0)
    [first] = await collect(tailer, until=has_lines(1))
    with path.open("r+b") as file:  # copytruncate: same inode, new content, already longer
        file.truncate(0)
        file.write(b"generation 2 is longer\nand has two lines\n")
    batches = await collect(tailer, until=has_lines(2))
    closing = [b for b in batches if b.file_key == first.file_key]
    assert [(b.rotated, b.all_lines(), b.end_offset) for b in closing] == [(True, [], 13)]
    assert all_lines(batches) == [b"generation 2 is longer", b"and has two lines"]
    assert counter(metrics, "span_file_truncations_total") == 1


async def test_truncated_file_with_the_same_first_line_keeps_its_key(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"logger started\nold line\n")
    tailer = await make_tailer([str(path)])
    [first] = await collect(tailer, until=has_lines(2))
    with path.open("r+b") as file:
        file.truncate(0)
    append(path, b"logger started\nnew\n")
    batches = await collect(tailer, until=has_lines(2))
    assert {b.file_key for b in batches} == {first.file_key}
    assert not any(b.rotated for b in batches)
    assert all_lines(batches) == [b"logger started", b"new"]
    assert batches[-1].end_offset == path.stat().st_size  # offsets restarted from 0


async def test_deleted_file_is_read_to_its_end_then_let_go(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\n")
    tailer = await make_tailer([str(path)])
    await collect(tailer, until=has_lines(1))
    with path.open("ab") as file:
        file.write(b"two\nunterminated last record")
        path.unlink()
    batches = await collect(tailer, until=lambda b: any(x.rotated for x in b))
    assert all_lines(batches) == [b"two", b"unterminated last record"]
    assert batches[-1].rotated
    assert batches[-1].end_offset == len(b"one\ntwo\nunterminated last record")
    assert tailer.known_files() == {}


async def test_a_busy_file_does_not_starve_a_quiet_one(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    busy, quiet = tmp_path / "busy.log", tmp_path / "quiet.log"
    busy.write_bytes(b"".join(b"busy %d\n" % n for n in range(50_000)))
    quiet.write_bytes(b"quiet\n")
    tailer = await make_tailer([str(tmp_path / "*.log")], max_batch_lines=1000)
    batches = await collect(tailer, until=lambda b: any(x.path == str(quiet) for x in b))
    busy_lines = sum(b.line_count for b in batches if b.path == str(busy))
    assert busy_lines <= 2000  # the quiet file got its turn after at most two busy batches
    rest = await collect(tailer, until=has_lines(50_000 - busy_lines))
    numbers = [
        int(line.split()[1])
        for b in batches + rest
        for line in b.all_lines()
        if b.path == str(busy)
    ]
    assert numbers == list(range(50_000))


async def test_notifications_make_reading_prompt_without_polling(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    existing = tmp_path / "a.log"
    existing.write_bytes(b"")
    tailer = await make_tailer([str(tmp_path / "*.log")], poll_interval=60.0)
    await asyncio.sleep(0.3)  # let the watcher subscribe
    assert tailer.status()["notifications"]
    started = time.monotonic()
    append(existing, b"grown\n")
    (tmp_path / "b.log").write_bytes(b"created\n")
    batches = await collect(tailer, until=has_lines(2), timeout=5.0)
    assert time.monotonic() - started < 2.0
    assert sorted(all_lines(batches)) == [b"created", b"grown"]


async def test_a_glob_directory_created_later_is_found_at_the_normal_poll_pace(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    """One glob's directory is watched, the other's does not exist yet: no notification can
    come for it, so the poll must not slow down (10 s here) until it is watched too."""
    (tmp_path / "a").mkdir()
    later = tmp_path / "b"
    globs = [str(tmp_path / "a" / "*.log"), str(later / "*.log")]
    tailer = await make_tailer(globs, poll_interval=1.0)
    await asyncio.sleep(1.5)  # the watcher is subscribed and the first poll is behind us
    assert tailer.status()["notifications"]
    later.mkdir()
    (later / "app.log").write_bytes(b"hello\n")
    started = time.monotonic()
    batches = await collect(tailer, until=has_lines(1), timeout=8.0)
    assert time.monotonic() - started < 4.0, "found by the normal 1 s poll, not 10x later"
    assert all_lines(batches) == [b"hello"]


async def test_a_rotated_file_is_let_go_on_time_while_notifications_slow_the_poll(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    """With notifications working the safety-net poll runs 10x less often (here every 10 s);
    a renamed-away file gets no notification once it is quiet, so the tailer must keep
    scanning at the normal pace until rotate_wait has passed and it is let go."""
    path = tmp_path / "app.log"
    path.write_bytes(b"first\n")
    tailer = await make_tailer([str(path)], poll_interval=1.0, rotate_wait=0.2)
    await asyncio.sleep(0.3)  # let the watcher subscribe
    assert tailer.status()["notifications"]
    await collect(tailer, until=has_lines(1), timeout=5.0)
    path.rename(tmp_path / "app.log.1")
    path.write_bytes(b"second\n")
    started = time.monotonic()
    batches = await collect(
        tailer, until=lambda got: any(batch.rotated for batch in got), timeout=8.0
    )
    assert time.monotonic() - started < 4.0, "let go at the poll's normal pace, not 10x later"
    assert all_lines(batches) == [b"second"]


@pytest.fixture
def broken_notifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stands in for an exhausted inotify limit, which a test cannot safely provoke."""

    def watch_limit_reached(*_paths: Any, **_options: Any) -> AsyncIterator[Any]:
        raise OSError("OS file watch limit reached")

    monkeypatch.setattr(watcher, "awatch", watch_limit_reached)
    yield


@pytest.mark.usefixtures("broken_notifications")
async def test_polling_carries_on_when_notifications_fail(
    tmp_path: Path, make_tailer: TailerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    tailer = await make_tailer([str(tmp_path / "*.log")], poll_interval=0.05)
    await asyncio.sleep(0.1)
    (tmp_path / "late.log").write_bytes(b"found by polling\n")
    batches = await collect(tailer, until=has_lines(1))
    assert all_lines(batches) == [b"found by polling"]
    status = tailer.status()
    assert not status["notifications"]
    assert "watch limit" in status["notification_error"]
    assert sum("relying on polling" in r.getMessage() for r in caplog.records) == 1


async def test_bad_lines_never_stall_a_file(tmp_path: Path, make_tailer: TailerFactory) -> None:
    path = tmp_path / "bad.log"
    huge = b"{" + b"a" * (5 * 1024 * 1024) + b"}"
    garbage = bytes(range(256)).replace(b"\n", b"") * 4
    path.write_bytes(b"ok 1\r\n" + huge + b"\n" + garbage + b"\nok 2\n")
    metrics = Metrics()
    tailer = await make_tailer([str(path)], metrics=metrics, read_chunk_bytes=64 * 1024)
    batches = await collect(tailer, until=lambda b: b"ok 2" in all_lines(b))
    assert all_lines(batches) == [b"ok 1", garbage, b"ok 2"]
    [oversize] = [o for b in batches for o in b.oversize]
    assert oversize.length == len(huge)
    assert Path(oversize.spill_path).read_bytes() == huge
    assert counter(metrics, "span_oversize_lines_total") == 1
    append(path, b"no newline yet")
    assert await tailer.next_batch(timeout=0.5) is None  # held, not emitted half-written
    append(path, b", now complete\n")
    batches = await collect(tailer, until=has_lines(1))
    assert all_lines(batches) == [b"no newline yet, now complete"]


async def test_status_and_known_files_report_each_file(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"".join(b"line %d\n" % n for n in range(100)))
    tailer = await make_tailer([str(path)], max_batch_lines=10)
    batch: LineBatch | None = await tailer.next_batch(timeout=5)
    assert batch is not None
    status = tailer.status()
    assert status["files_watched"] == 1
    assert status["bytes_behind"] == path.stat().st_size - batch.end_offset
    assert list(tailer.known_files()) == [batch.file_key]
    assert tailer.known_paths() == {batch.file_key: str(path)}
    assert os.path.exists(status["files"][0]["path"])


def open_fds() -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
    return targets


async def test_stop_closes_every_file_it_opened(tmp_path: Path, make_tailer: TailerFactory) -> None:
    for index in range(20):
        (tmp_path / f"{index}.log").write_bytes(b"line\n")
    tailer = await make_tailer([str(tmp_path / "*.log")], poll_interval=0.01)
    await collect(tailer, until=has_lines(20))
    assert sum(str(tmp_path) in target for target in open_fds()) == 20
    await asyncio.sleep(0.05)  # stop while scans are running
    await tailer.stop()
    assert [target for target in open_fds() if str(tmp_path) in target] == []
