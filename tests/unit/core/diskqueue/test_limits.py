"""DiskQueue: byte limit and full policies, segment roll and deletion, bounded memory."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

import pytest

from agent.core.diskqueue.queue import DiskQueue, Item, QueueFullError, RecordTooLargeError
from agent.core.diskqueue.segment import scan_segment

KIB = 1024


def frame_bytes(path: Path) -> int:
    """Where a segment's last frame ends."""
    return scan_segment(path, int(path.stem)).good_end


async def drain_and_ack(queue: DiskQueue, max_items: int = 100) -> list[Item]:
    items: list[Item] = []
    while batch := await queue.get(max_items, timeout=0.05):
        items += batch
        queue.ack_many(item.seq for item in batch)
    return items


async def fill(queue: DiskQueue, record: bytes) -> int:
    """Put records until the queue says it is full; returns how many went in."""
    count = 0
    with pytest.raises(QueueFullError) as raised:
        while True:
            await queue.put(record)
            count += 1
    assert raised.value.depth_items == count
    assert raised.value.depth_bytes <= raised.value.max_bytes
    return count


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most half"):
        DiskQueue(tmp_path, max_bytes=64 * KIB, segment_bytes=48 * KIB)
    with pytest.raises(ValueError, match="when_full"):
        DiskQueue(tmp_path, when_full="drop")  # type: ignore[arg-type]


async def test_reject_policy_raises_at_once_with_the_depth(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, max_bytes=64 * KIB, when_full="reject") as queue:
        count = await fill(queue, b"r" * 980)
        stats = queue.stats()
    # 8 KiB segments (max_bytes / 8) hold 8 frames of 1008 bytes each: 8 full segments.
    assert count == 64
    assert stats.depth_bytes <= 64 * KIB
    assert stats.depth_items == count


async def test_block_policy_times_out_with_queue_full_error(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, max_bytes=64 * KIB, full_timeout=0.1) as queue:
        await queue.put_many([b"b" * 1000] * 50)
        started = time.monotonic()
        with pytest.raises(QueueFullError, match="disk queue full"):
            await queue.put_many([b"b" * 1000] * 20)
        assert time.monotonic() - started >= 0.09


async def test_block_policy_proceeds_once_acks_delete_a_segment(tmp_path: Path) -> None:
    async with DiskQueue(
        tmp_path, max_bytes=64 * KIB, full_timeout=5.0, frontier_persist_interval=0.01
    ) as queue:
        for _ in range(2):
            await queue.put_many([b"b" * 980] * 32)
        segments_when_full = len(list(tmp_path.glob("*.seg")))
        blocked = asyncio.create_task(queue.put(b"w" * 980))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        drained = await drain_and_ack(queue)
        seq = await asyncio.wait_for(blocked, 5)
        assert len(list(tmp_path.glob("*.seg"))) < segments_when_full
    assert seq == 64
    assert [item.seq for item in drained][:64] == list(range(64))


async def test_records_and_batches_that_can_never_fit_are_refused(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, max_bytes=64 * KIB) as queue:
        with pytest.raises(RecordTooLargeError, match="does not fit a segment"):
            await queue.put(b"x" * (8 * KIB))
        with pytest.raises(RecordTooLargeError, match="can never fit"):
            await queue.put_many([b"x" * 4000] * 15)
        assert queue.stats().depth_items == 0
        await queue.put(b"x" * 4000)


async def test_segments_roll_and_fully_acked_ones_are_deleted(tmp_path: Path) -> None:
    async with DiskQueue(
        tmp_path, max_bytes=1024 * KIB, segment_bytes=16 * KIB, frontier_persist_interval=0.01
    ) as queue:
        await queue.put_many([b"s" * 1000] * 100)
        names = sorted(path.name for path in tmp_path.glob("*.seg"))
        assert len(names) == 7
        assert names[0] == "00000000000000000000.seg"
        assert all(path.stat().st_size <= 16 * KIB for path in tmp_path.glob("*.seg"))
        await drain_and_ack(queue)
        await asyncio.sleep(0.05)
        stats = queue.stats()
        remaining = list(tmp_path.glob("*.seg"))
        assert [path.name for path in remaining] == names[-1:]
        # The bytes of its frames, not of the space reserved ahead of them.
        assert stats.depth_bytes == frame_bytes(remaining[0]) < remaining[0].stat().st_size
        assert stats.segments == 1
    assert stats.depth_bytes == remaining[0].stat().st_size  # closed: trimmed to its frames


async def test_a_consumer_far_behind_reads_from_disk_in_order(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, ready_cache_bytes=2 * KIB, read_chunk_bytes=4 * KIB) as queue:
        received: list[Item] = []
        for round_number in range(20):
            await queue.put_many([b"%d-%d" % (round_number, i) for i in range(50)])
            batch = await queue.get(30)
            received += batch
            queue.ack_many(item.seq for item in batch)
        received += await drain_and_ack(queue)
    assert [item.seq for item in received] == list(range(1000))


async def test_memory_stays_bounded_while_draining_a_large_backlog(tmp_path: Path) -> None:
    record = b"m" * (64 * KIB)
    async with DiskQueue(tmp_path, max_bytes=256 << 20) as queue:
        for _ in range(32):
            await queue.put_many([record] * 16, durable=False)
    tracemalloc.start()
    try:
        async with DiskQueue(tmp_path, max_bytes=256 << 20) as queue:
            count = 0
            while batch := await queue.get(8, timeout=0.05):
                count += len(batch)
                queue.ack_many(item.seq for item in batch)
            _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 512  # a 32 MiB backlog
    assert peak < 6 << 20


async def test_lossy_puts_wait_once_too_much_is_unwritten(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, max_unwritten_bytes=4 * KIB) as queue:
        for _ in range(50):
            await queue.put(b"u" * 1000, durable=False)
        # Every fifth put finds more than 4 KiB unwritten and waits for a group commit.
        assert queue.stats().fsyncs >= 9
