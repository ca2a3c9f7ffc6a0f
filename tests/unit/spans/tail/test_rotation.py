"""Rotation at a steady write rate: every line read once, in order per file, nothing lost.

A writer thread appends numbered lines ("file=A n=123") at about 3,000 lines/s to `app.log`
while the test rotates it; a consumer commits offsets through DeliveryTracker marks and a
CheckpointStore, as the pipeline does.

rename/create is the safe rotation: the renamed file keeps its inode, is read to its end
(including lines the application writes to it before reopening), and the new file is read from
the beginning. copytruncate is not safe by nature: lines written after the tailer's last read
and before the truncate exist only in the copy (and lines written between the copy and the
truncate exist nowhere). That test asserts exactly this bound and nothing more.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.core.metrics import Metrics
from agent.spans.delivery.checkpoint import CheckpointStore
from agent.spans.tail.tailer import LineBatch, Tailer
from tests.harness.eventually import eventually

from .conftest import CommittingConsumer, TailerFactory

RATE = 3000  # lines per second
TICK = 0.005


class SteadyWriter(threading.Thread):
    """Appends numbered lines at RATE, as an application with an open log file does.

    `rotate()` makes it do a logrotate-style rename (shifting app.log.N up) and reopen, after
    writing two more ticks into the renamed file, like an application that reopens its log
    only when signalled."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.rotations = 0
        self._stop_event = threading.Event()
        self._rotate_requested = threading.Event()
        self.rotated = threading.Event()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run(self) -> None:
        per_tick = int(RATE * TICK)
        late_ticks = 0
        next_tick = time.monotonic()
        while not self._stop_event.is_set():
            if self._rotate_requested.is_set() and late_ticks == 0:
                self._rotate_requested.clear()
                self._shift_names()
                late_ticks = 3
            elif late_ticks == 1:
                os.close(self._fd)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self.rotated.set()
            late_ticks = max(0, late_ticks - 1)
            lines = b"".join(b"file=A n=%d\n" % (self.written + i) for i in range(per_tick))
            os.write(self._fd, lines)
            self.written += per_tick
            next_tick += TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))
        os.close(self._fd)

    def _shift_names(self) -> None:
        for index in range(self.rotations, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            os.rename(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.rename(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1

    def rotate(self) -> None:
        self.rotated.clear()
        self._rotate_requested.set()

    def finish(self) -> int:
        self._stop_event.set()
        self.join()
        return self.written


def numbers(batches: list[LineBatch]) -> list[int]:
    return [int(line.rsplit(b"=", 1)[1]) for batch in batches for line in batch.all_lines()]


def numbers_by_file(batches: list[LineBatch]) -> dict[str, list[int]]:
    per_file: dict[str, list[int]] = {}
    for batch in batches:
        per_file.setdefault(batch.file_key, []).extend(numbers([batch]))
    return per_file


def assert_exactly_once_in_order_per_file(batches: list[LineBatch], written: int) -> None:
    read = numbers(batches)
    assert len(read) == written, f"{written - len(read)} lines missing or duplicated"
    assert sorted(read) == list(range(written))
    for key, per_file in numbers_by_file(batches).items():
        assert per_file == sorted(per_file), f"order broken in {key}"


async def consume_until(
    consumer: CommittingConsumer, done: Callable[[], bool], *, what: str, timeout: float = 10
) -> None:
    """Consume until `done()` holds, then save; fails the test after `timeout` seconds."""

    async def consumed_enough() -> bool:
        batch = await consumer.tailer.next_batch(timeout=0.05)
        if batch is not None:
            consumer.consume(batch)
        return done()

    deadline = time.monotonic() + timeout
    while not await consumed_enough():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
    consumer.save()


async def consume_until_read(consumer: CommittingConsumer, target: int, timeout: float) -> None:
    """Consume until `target` lines were read, then save."""
    await consume_until(
        consumer,
        lambda: len(numbers(consumer.batches)) >= target,
        what=f"{target} lines read",
        timeout=timeout,
    )


async def consume_for(consumer: CommittingConsumer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = await consumer.tailer.next_batch(timeout=0.05)
        if batch is not None:
            consumer.consume(batch)
    consumer.save()


async def wait_rotated(writer: SteadyWriter) -> None:
    await eventually(writer.rotated.is_set, what="the writer's rotation")


async def let_write(writer: SteadyWriter, lines: int) -> None:
    """Until the writer has written `lines` more (it writes RATE a second)."""
    target = writer.written + lines
    await eventually(lambda: writer.written >= target, what=f"{lines} more lines written")


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
async def test_rename_create_rotations_lose_nothing_and_keep_order(
    tmp_path: Path, make_tailer: TailerFactory, pattern: str
) -> None:
    path = tmp_path / "app.log"
    writer = SteadyWriter(path)
    metrics = Metrics()
    tailer = await make_tailer([str(tmp_path / pattern)], metrics=metrics, max_batch_lines=200)
    consumer = CommittingConsumer(tailer, CheckpointStore(tmp_path / "cp.json"))
    writer.start()
    for _ in range(3):
        await consume_for(consumer, 0.3)
        # Downstream is slow around the rotation: the renamed file still has a backlog when
        # its successor appears, and must be finished first.
        await let_write(writer, RATE // 5)
        writer.rotate()
        await wait_rotated(writer)
        await let_write(writer, RATE // 10)
    await consume_for(consumer, 0.3)
    written = writer.finish()
    await consume_until_read(consumer, written, timeout=10)
    assert_exactly_once_in_order_per_file(consumer.batches, written)
    # The application's lines come out in the order written, across rotations too.
    assert numbers(consumer.batches) == list(range(written))
    assert (metrics.registry.get_sample_value("sidecar_span_file_rotations_total") or 0) >= 3
    if pattern == "app.log":  # rotated names are outside the glob: each is let go at its end
        await consume_until(
            consumer,
            lambda: sum(batch.rotated for batch in consumer.batches) >= 3,
            what="the three rotated files let go",
        )
        assert sum(batch.rotated for batch in consumer.batches) == 3


async def test_copytruncate_loses_only_the_race_window_and_reads_nothing_twice(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "app.log"
    writer = SteadyWriter(path)
    metrics = Metrics()
    tailer = await make_tailer([str(path)], metrics=metrics)
    consumer = CommittingConsumer(tailer, CheckpointStore(tmp_path / "cp.json"))
    writer.start()
    copies: list[Path] = []
    for index in range(3):
        await consume_for(consumer, 0.4)
        copy = tmp_path / f"app.log.{index + 1}"
        shutil.copyfile(path, copy)
        os.truncate(path, 0)
        copies.append(copy)
    await consume_for(consumer, 0.4)
    written = writer.finish()
    live = [int(line.rsplit(b"=", 1)[1]) for line in path.read_bytes().splitlines()]
    await consume_until(
        consumer,
        lambda: written - 1 in numbers(consumer.batches[-3:]),
        what="the last line written",
    )

    read = numbers(consumer.batches)
    assert len(read) == len(set(read)), "a line was read twice"
    assert read == sorted(read), "order broken"
    assert set(live) <= set(read), "lines in the live file after the last truncation were lost"
    missing = sorted(set(range(written)) - set(read))
    # Whatever was lost sits just before a truncation: at most one contiguous run per
    # rotation, each shorter than half a second of writing.
    runs = contiguous_runs(missing)
    assert len(runs) <= len(copies)
    assert all(len(run) <= RATE // 2 for run in runs), [len(run) for run in runs]
    assert metrics.registry.get_sample_value("sidecar_span_file_truncations_total") == 3


def contiguous_runs(values: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for value in values:
        if runs and runs[-1][-1] == value - 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return runs


@pytest.mark.parametrize("pattern", ["app.log", "app.log*"])
async def test_rotation_while_stopped_resumes_from_checkpoints(
    tmp_path: Path, make_tailer: TailerFactory, pattern: str
) -> None:
    path = tmp_path / "app.log"
    store = CheckpointStore(tmp_path / "cp.json")
    writer = SteadyWriter(path)
    writer.start()
    first = CommittingConsumer(await make_tailer([str(tmp_path / pattern)]), store)
    await consume_for(first, 0.5)
    await first.tailer.stop()  # graceful: everything read was committed and saved

    await let_write(writer, RATE // 5)  # the writer goes on while the agent is down...
    writer.rotate()  # ...and its log is rotated
    await wait_rotated(writer)
    await let_write(writer, RATE // 5)

    offsets = {key: checkpoint.offset for key, checkpoint in store.load().items()}
    assert offsets, "the first run saved no checkpoint"
    second = CommittingConsumer(
        await make_tailer([str(tmp_path / pattern)], offsets=offsets), store
    )
    await consume_for(second, 0.4)
    written = writer.finish()
    await consume_until_read(second, written - len(numbers(first.batches)), timeout=10)
    assert_exactly_once_in_order_per_file(first.batches + second.batches, written)


async def test_graceful_restart_resends_nothing(tmp_path: Path, make_tailer: TailerFactory) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(b"file=A n=%d\n" % n for n in range(5000)))
    store = CheckpointStore(tmp_path / "cp.json")
    first = CommittingConsumer(await make_tailer([str(path)], max_batch_lines=500), store)
    for _ in range(4):  # stop part-way through the backlog
        batch = await first.tailer.next_batch(timeout=5)
        assert batch is not None
        first.consume(batch)
    first.save()
    await first.tailer.stop()
    offsets = {key: checkpoint.offset for key, checkpoint in store.load().items()}
    second = CommittingConsumer(await make_tailer([str(path)], offsets=offsets), store)
    await consume_until_read(second, 3000, timeout=10)
    assert numbers(first.batches) + numbers(second.batches) == list(range(5000))


async def test_crash_resends_only_what_was_not_committed(
    tmp_path: Path, make_tailer: TailerFactory
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(b"file=A n=%d\n" % n for n in range(1000)))
    store = CheckpointStore(tmp_path / "cp.json")
    first = CommittingConsumer(await make_tailer([str(path)], max_batch_lines=100), store)
    in_flight: list[LineBatch] = []
    for index in range(5):
        batch = await first.tailer.next_batch(timeout=5)
        assert batch is not None
        if index < 3:
            first.consume(batch)  # delivered and committed
        else:
            in_flight.append(batch)  # read, still being exported when the agent is killed
    first.save()
    # kill -9: nothing more is saved; the tailer's state is simply gone.
    offsets = {key: checkpoint.offset for key, checkpoint in store.load().items()}
    second = CommittingConsumer(await make_tailer([str(path)], offsets=offsets), store)
    await consume_until_read(second, 700, timeout=10)
    assert numbers(second.batches) == list(range(300, 1000))
    assert numbers(in_flight) == list(range(300, 500))  # re-sent: exactly what was in flight


def test_tailer_stop_before_start_is_safe(tmp_path: Path) -> None:
    tailer = Tailer(
        [str(tmp_path / "*.log")],
        start_at="beginning",
        max_line_bytes=1024,
        poll_interval=1.0,
        rotate_wait=1.0,
        offsets={},
        oversize_dir=tmp_path,
        metrics=Metrics(),
    )
    asyncio.run(tailer.stop())
    asyncio.run(tailer.stop())
    assert tailer.status()["files_watched"] == 0
