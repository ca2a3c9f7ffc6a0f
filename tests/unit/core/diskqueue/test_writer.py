"""DiskQueue's writer thread: lossy writes and syncs on their timers, commits that never wait
for the frontier's state file, decoded values that ride along while records stay in memory, and
a failed data sync that fails the puts waiting for it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import agent.core.diskqueue.persist as persist_module
from agent.core.atomicfile import load_state, write_all_at
from agent.core.diskqueue import commitio
from agent.core.diskqueue.directory import STATE_NAME, STATE_VERSION
from agent.core.diskqueue.queue import DiskQueue, DiskQueueError, Item
from agent.core.diskqueue.segment import SEGMENT_SUFFIX
from tests.harness.eventually import eventually


def segment_bytes(directory: Path) -> int:
    """Bytes written to the queue's segment files as the file system sees them (page cache
    included): up to the last non-zero byte, past the space reserved ahead of the frames."""
    return sum(
        len(path.read_bytes().rstrip(b"\0")) for path in directory.glob(f"*{SEGMENT_SUFFIX}")
    )


def persisted_frontier(directory: Path) -> int:
    state = load_state(directory / STATE_NAME, STATE_VERSION)
    return int(state["acked_frontier"]) if state is not None else 0


async def drain(queue: DiskQueue) -> list[Item]:
    items: list[Item] = []
    while batch := await queue.get(1000, timeout=0.05):
        items += batch
    return items


async def test_lossy_puts_reach_the_file_within_the_write_delay(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, lossy_write_delay=0.01, lossy_sync_interval=60)
    await queue.open()
    empty = segment_bytes(tmp_path)
    await queue.put(b"lossy", durable=False)
    await eventually(lambda: segment_bytes(tmp_path) > empty, what="the write")
    assert queue.stats().fsyncs == 0  # written, not synced
    await queue.abort()  # like kill -9: what was written is in the page cache
    async with DiskQueue(tmp_path) as reopened:
        assert [item.data for item in await drain(reopened)] == [b"lossy"]


async def test_a_crash_within_the_write_delay_loses_a_lossy_put(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, lossy_write_delay=60)
    await queue.open()
    await queue.put(b"lossy", durable=False)
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        assert await drain(reopened) == []


async def test_lossy_puts_are_synced_within_the_sync_interval(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, lossy_write_delay=0.001, lossy_sync_interval=0.05) as queue:
        await queue.put_many([b"a", b"b"], durable=False)
        await eventually(lambda: queue.stats().fsyncs >= 1, what="the lazy sync")
        assert queue.stats().fsyncs == 1, "one sync for both"


async def test_sync_waits_for_lossy_puts_and_returns_at_once_when_nothing_is_unsynced(
    tmp_path: Path,
) -> None:
    async with DiskQueue(tmp_path, lossy_write_delay=60, lossy_sync_interval=60) as queue:
        await queue.sync()
        assert queue.stats().fsyncs == 0, "nothing to sync: no commit"
        await queue.put_many([b"a", b"b"], durable=False)
        assert queue.stats().fsyncs == 0
        await queue.sync()
        assert queue.stats().fsyncs == 1
        await queue.sync()
        assert queue.stats().fsyncs == 1


async def test_acks_of_lossy_records_are_persisted_without_any_durable_put(
    tmp_path: Path,
) -> None:
    # The frontier only claims synced records; the lazy sync must still let it advance.
    queue = DiskQueue(
        tmp_path,
        lossy_write_delay=0.001,
        lossy_sync_interval=0.02,
        frontier_persist_interval=0.01,
    )
    await queue.open()
    await queue.put_many([b"%d" % i for i in range(10)], durable=False)
    queue.ack_many(item.seq for item in await queue.get(10))
    await eventually(lambda: persisted_frontier(tmp_path) == 10, what="the acks on disk")
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        assert await drain(reopened) == []


async def test_a_durable_put_joins_the_commit_of_lossy_ones_before_it(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, lossy_write_delay=60, lossy_sync_interval=60)
    await queue.open()
    await queue.put(b"lossy", durable=False)
    await queue.put(b"durable")
    assert queue.stats().fsyncs == 1
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        assert [item.data for item in await drain(reopened)] == [b"lossy", b"durable"]


async def test_a_slow_frontier_save_does_not_hold_up_durable_puts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saving, release = threading.Event(), threading.Event()
    real_save = persist_module.save_acks_and_delete

    def stuck_save(*args: Any) -> None:
        saving.set()
        release.wait(10)
        real_save(*args)

    monkeypatch.setattr(persist_module, "save_acks_and_delete", stuck_save)
    async with DiskQueue(tmp_path, frontier_persist_interval=0.01) as queue:
        await queue.put(b"first")
        queue.ack((await queue.get(1))[0].seq)
        assert await asyncio.to_thread(saving.wait, 5)  # the save is stuck in its thread
        started = time.monotonic()
        try:
            await asyncio.wait_for(queue.put(b"second"), timeout=2)
        finally:
            release.set()
        assert time.monotonic() - started < 1


async def test_decoded_values_ride_along_while_records_stay_in_memory(tmp_path: Path) -> None:
    decoded = object()
    async with DiskQueue(tmp_path) as queue:
        await queue.put(b"a", decoded=decoded)
        await queue.put_many([b"b", b"c"], decoded=["b!", "c!"])
        items = await queue.get(3)
        assert [item.decoded for item in items] == [decoded, "b!", "c!"]
    async with DiskQueue(tmp_path) as queue:  # read back from disk: the bytes only
        again = await drain(queue)
    assert [(item.data, item.decoded) for item in again] == [
        (b"a", None),
        (b"b", None),
        (b"c", None),
    ]


async def test_a_cancelled_durable_put_leaves_the_others_waiting_for_the_same_sync(
    tmp_path: Path,
) -> None:
    async with DiskQueue(tmp_path) as queue:
        puts = [asyncio.create_task(queue.put(b"%d" % i)) for i in range(20)]
        await asyncio.sleep(0)
        puts[0].cancel()
        done = await asyncio.gather(*puts[1:])
        assert done == list(range(1, 20))


async def test_a_clean_close_syncs_lossy_writes_and_keeps_their_acks(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, lossy_write_delay=0.001, lossy_sync_interval=60) as queue:
        empty = segment_bytes(tmp_path)
        await queue.put_many([b"a", b"b"], durable=False)
        await eventually(lambda: segment_bytes(tmp_path) > empty, what="the write")
        assert queue.stats().fsyncs == 0, "written, not synced"
        queue.ack_many(item.seq for item in await queue.get(2))
    async with DiskQueue(tmp_path) as reopened:
        assert await drain(reopened) == []


class SyncFailsWithEio:
    """A test double for a disk whose ``fdatasync`` reports EIO, which a real disk cannot be
    made to do on demand: while ``failing``, a commit's bytes are written and its sync fails,
    before the wake-up, as ``commitio.commit`` fails then (the C one and the pure one)."""

    def __init__(self) -> None:
        self.failing = False
        self.failed_syncs = 0
        self._real = commitio.commit

    def __call__(self, fd: int, parts: list[bytes], offset: int, sync: bool, notify: int) -> None:
        if self.failing and sync:
            write_all_at(fd, parts, offset)
            self.failed_syncs += 1
            raise OSError(errno.EIO, "Input/output error")
        self._real(fd, parts, offset, sync, notify)


async def test_a_failed_fdatasync_fails_every_waiting_put_and_is_counted_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SyncFailsWithEio()
    monkeypatch.setattr(commitio, "commit", disk)
    async with DiskQueue(tmp_path) as queue:
        await queue.put(b"before")
        disk.failing = True
        outcomes = await asyncio.gather(
            *(queue.put(b"lost-%d" % n) for n in range(5)), return_exceptions=True
        )
        assert disk.failed_syncs >= 1
        for outcome in outcomes:
            assert isinstance(outcome, DiskQueueError), outcome
            assert "Input/output error" in str(outcome)
        stats = queue.stats()
        assert stats.io_errors >= 1 and stats.records_given_up == 5
        assert stats.failed is not None and "Input/output error" in stats.failed
        disk.failing = False
        await eventually(lambda: queue.stats().failed is None, what="the recovery")
        await queue.put(b"after")
        assert queue.stats().recoveries == 1
        assert [item.data for item in await drain(queue)] == [b"before", b"after"]
    async with DiskQueue(tmp_path) as reopened:
        assert [item.data for item in await drain(reopened)] == [b"before", b"after"]


async def test_commits_done_before_a_failure_count_as_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure reaches the event loop by another road than the commits before it; those
    must still be settled first, so that the rollback keeps what they synced."""
    disk = SyncFailsWithEio()
    monkeypatch.setattr(commitio, "commit", disk)
    async with DiskQueue(tmp_path) as queue:
        for round_ in range(20):
            kept = await asyncio.gather(*(queue.put(b"kept-%d-%d" % (round_, n)) for n in range(3)))
            assert len(kept) == 3
        disk.failing = True
        failed = await asyncio.gather(queue.put(b"lost"), return_exceptions=True)
        assert isinstance(failed[0], DiskQueueError)
        disk.failing = False
        await eventually(lambda: queue.stats().failed is None, what="the recovery")
    async with DiskQueue(tmp_path) as reopened:
        data = [item.data for item in await drain(reopened)]
    assert data == [b"kept-%d-%d" % (r, n) for r in range(20) for n in range(3)]


async def test_without_an_eventfd_commits_are_counted_on_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the OS has no eventfd the thread counts done commits on a pipe, the same way."""
    monkeypatch.delattr(os, "eventfd")
    async with DiskQueue(tmp_path, lossy_write_delay=0.001) as queue:
        await queue.put_many([b"lossy-%d" % n for n in range(3)], durable=False)
        seqs = await asyncio.gather(*(queue.put(b"%d" % n) for n in range(50)))
        assert sorted(seqs) == list(range(3, 53))
        assert len(await drain(queue)) == 53
    async with DiskQueue(tmp_path) as reopened:
        assert len(await drain(reopened)) == 53
