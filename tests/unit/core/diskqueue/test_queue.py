"""DiskQueue: ordering, acks, requeue, redelivery after restart, group commit, lifecycle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.core.diskqueue.queue import (
    DiskQueue,
    Item,
    QueueClosedError,
    QueueLockedError,
)


async def drain(queue: DiskQueue, max_items: int = 1000) -> list[Item]:
    """Everything the queue hands out until it has nothing more, without acking."""
    items: list[Item] = []
    while batch := await queue.get(max_items, timeout=0.05):
        items += batch
    return items


def payloads(items: list[Item]) -> list[bytes]:
    return [item.data for item in items]


async def test_records_come_out_in_order_with_seq_and_enqueue_time(tmp_path: Path) -> None:
    before = time.time_ns()
    async with DiskQueue(tmp_path) as queue:
        seqs = [await queue.put(b"record-%d" % i) for i in range(5)]
        items = await queue.get(10)
    assert seqs == [0, 1, 2, 3, 4]
    assert [item.seq for item in items] == seqs
    assert payloads(items) == [b"record-%d" % i for i in range(5)]
    assert all(before <= item.enqueued_ns <= time.time_ns() for item in items)


async def test_put_many_returns_consecutive_seqs(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        first = await queue.put_many([b"a", b"b"])
        second = await queue.put_many([b"c"])
        assert await queue.put_many([]) == []
        assert payloads(await queue.get(10)) == [b"a", b"b", b"c"]
    assert first + second == [0, 1, 2]


async def test_get_times_out_empty_then_wakes_on_put(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        started = time.monotonic()
        assert await queue.get(10, timeout=0.05) == []
        assert time.monotonic() - started >= 0.04
        waiting = asyncio.create_task(queue.get(10, timeout=5))
        await asyncio.sleep(0.01)
        await queue.put(b"late")
        assert payloads(await waiting) == [b"late"]


async def test_get_respects_item_and_byte_budgets(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"x" * 10] * 6 + [b"y" * 100])
        assert len(await queue.get(2)) == 2
        assert len(await queue.get(10, max_bytes=25)) == 2
        assert len(await queue.get(10, max_bytes=10)) == 1
        # A record bigger than the byte budget still goes out, alone.
        assert payloads(await queue.get(10, max_bytes=10)) == [b"x" * 10]
        assert payloads(await queue.get(10, max_bytes=10)) == [b"y" * 100]


async def test_requeued_records_go_out_again_first_and_in_order(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"%d" % i for i in range(6)])
        first = await queue.get(2)
        second = await queue.get(2)
        queue.requeue([second[1].seq, first[0].seq, second[0].seq])
        again = await queue.get(2)
        rest = await queue.get(10)
        assert payloads(again) == [b"0", b"2"]
        assert payloads(rest) == [b"3", b"4", b"5"]
        assert queue.stats().in_flight == 6


async def test_requeue_and_ack_reject_seqs_never_handed_out(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"a", b"b"])
        [item] = await queue.get(1)
        with pytest.raises(ValueError, match="not in flight"):
            queue.requeue([item.seq + 1])
        with pytest.raises(ValueError, match="not handed out"):
            queue.ack(item.seq + 1)
        queue.ack(item.seq)
        queue.ack(item.seq)  # a second ack is a no-op
        assert queue.stats().acks == 1


async def test_acking_a_requeued_record_removes_it(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"a", b"b"])
        items = await queue.get(2)
        queue.requeue([item.seq for item in items])
        queue.ack(items[0].seq)
        assert payloads(await queue.get(10)) == [b"b"]


async def test_unacked_records_come_back_in_order_after_close(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"%d" % i for i in range(10)])
        handed = await queue.get(4)
        queue.ack_many(item.seq for item in handed[:2])
    async with DiskQueue(tmp_path) as queue:
        again = await drain(queue)
    assert [item.seq for item in again] == list(range(2, 10))
    assert payloads(again) == [b"%d" % i for i in range(2, 10)]


async def test_unacked_records_come_back_after_abort(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, frontier_persist_interval=60)
    await queue.open()
    await queue.put_many([b"%d" % i for i in range(10)])
    queue.ack_many(item.seq for item in await queue.get(3))
    await queue.abort()  # a crash: the acks were never persisted
    async with DiskQueue(tmp_path) as reopened:
        assert payloads(await drain(reopened)) == [b"%d" % i for i in range(10)]


async def test_out_of_order_acks_survive_a_restart(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await queue.put_many([b"%d" % i for i in range(8)])
        items = await queue.get(8)
        queue.ack_many([items[3].seq, items[1].seq, items[2].seq, items[6].seq])
        assert queue.stats().depth_items == 4
    async with DiskQueue(tmp_path) as queue:
        assert queue.stats().depth_items == 4
        again = await drain(queue)
        assert [item.seq for item in again] == [0, 4, 5, 7]
        queue.ack_many([7, 5])
        assert queue.stats().depth_items == 2
        queue.ack_many([0, 4])
        assert queue.stats().depth_items == 0
    async with DiskQueue(tmp_path) as queue:
        assert await drain(queue) == []
        assert await queue.put(b"next") == 8


async def test_frontier_is_persisted_within_the_interval_without_close(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, frontier_persist_interval=0.02)
    await queue.open()
    await queue.put_many([b"%d" % i for i in range(5)])
    queue.ack_many(item.seq for item in await queue.get(5))
    await asyncio.sleep(0.1)
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        assert await drain(reopened) == []


async def test_acks_above_a_stuck_record_survive_a_crash(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, frontier_persist_interval=0.01)
    await queue.open()
    await queue.put_many([b"%d" % i for i in range(100)])
    items = await queue.get(100)
    queue.ack_many(item.seq for item in items[1:] if item.seq % 7)  # seq 0 is stuck, say
    await asyncio.sleep(0.05)
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        redelivered = [item.seq for item in await drain(reopened)]
    assert redelivered == [seq for seq in range(100) if seq % 7 == 0]


async def test_frontier_is_persisted_after_enough_acks(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path, frontier_persist_interval=60, frontier_persist_records=10)
    await queue.open()
    await queue.put_many([b"%d" % i for i in range(25)])
    for item in await queue.get(25):
        queue.ack(item.seq)
        await asyncio.sleep(0)  # let the commit task persist as the count is reached
    await asyncio.sleep(0.05)
    await queue.abort()
    async with DiskQueue(tmp_path) as reopened:
        redelivered = await drain(reopened)
    # At most the acks since the last persist (fewer than frontier_persist_records) come back.
    assert len(redelivered) < 10
    assert [item.seq for item in redelivered] == list(range(25 - len(redelivered), 25))


async def test_concurrent_producers_each_record_once_in_producer_order(tmp_path: Path) -> None:
    producers, per_producer = 8, 200
    received: list[Item] = []

    async def produce(producer: int) -> None:
        for i in range(per_producer):
            await queue.put(b"%d:%d" % (producer, i))

    async def consume() -> None:
        while len(received) < producers * per_producer:
            batch = await queue.get(64, timeout=2)
            received.extend(batch)
            queue.ack_many(item.seq for item in batch)

    async with DiskQueue(tmp_path, max_bytes=1 << 20) as queue:
        await asyncio.gather(consume(), *(produce(p) for p in range(producers)))
        assert queue.stats().depth_items == 0
    assert [item.seq for item in received] == list(range(producers * per_producer))
    by_producer: dict[bytes, list[int]] = {}
    for item in received:
        producer, index = item.data.split(b":")
        by_producer.setdefault(producer, []).append(int(index))
    assert all(indexes == list(range(per_producer)) for indexes in by_producer.values())
    assert len(by_producer) == producers


async def test_group_commit_shares_fsyncs_between_concurrent_puts(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        await asyncio.gather(*(queue.put(b"r%d" % i) for i in range(500)))
        stats = queue.stats()
    assert stats.appends == 500
    assert stats.fsyncs <= 10


async def test_non_durable_puts_return_at_once_and_are_flushed_by_close(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        seqs = [await queue.put(b"%d" % i, durable=False) for i in range(100)]
        assert queue.stats().fsyncs == 0
    assert seqs == list(range(100))
    async with DiskQueue(tmp_path) as queue:
        assert len(await drain(queue)) == 100


async def test_a_second_owner_gets_a_named_error(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path):
        with pytest.raises(QueueLockedError, match="locked by another process"):
            await DiskQueue(tmp_path).open()
    async with DiskQueue(tmp_path) as queue:  # released on close
        assert queue.stats().depth_items == 0


async def test_close_is_idempotent_and_safe_before_open(tmp_path: Path) -> None:
    never_opened = DiskQueue(tmp_path)
    await never_opened.close()
    queue = DiskQueue(tmp_path)
    await queue.open()
    await queue.close()
    await queue.close()
    with pytest.raises(QueueClosedError):
        await queue.put(b"late")
    with pytest.raises(QueueClosedError):
        await queue.get(1, timeout=0)


async def test_close_wakes_a_waiting_consumer(tmp_path: Path) -> None:
    queue = DiskQueue(tmp_path)
    await queue.open()
    waiting = asyncio.create_task(queue.get(10))
    await asyncio.sleep(0.01)
    await queue.close()
    with pytest.raises(QueueClosedError):
        await waiting


async def test_stats_report_depth_in_flight_and_oldest_age(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path) as queue:
        assert queue.stats().oldest_enqueued_ns is None
        await queue.put(b"old")
        await asyncio.sleep(0.002)
        await queue.put_many([b"new", b"newer"])
        [first] = await queue.get(1)
        stats = queue.stats()
        assert (stats.depth_items, stats.in_flight) == (3, 1)
        assert stats.oldest_enqueued_ns == first.enqueued_ns
        queue.ack(first.seq)
        [second] = await queue.get(1)
        assert queue.stats().oldest_enqueued_ns == second.enqueued_ns > first.enqueued_ns
    async with DiskQueue(tmp_path) as queue:
        # Before anything is read back, the age is the segment's first record (never younger).
        oldest = queue.stats().oldest_enqueued_ns
        assert oldest is not None and oldest <= second.enqueued_ns


async def test_a_cancelled_get_loses_nothing(tmp_path: Path) -> None:
    async with DiskQueue(tmp_path, ready_cache_bytes=0) as queue:
        await queue.put_many([b"%d" % i for i in range(50)])
    async with DiskQueue(tmp_path) as queue:
        for _ in range(5):
            attempt = asyncio.create_task(queue.get(5))
            await asyncio.sleep(0)
            attempt.cancel()
            try:
                got = await attempt
            except asyncio.CancelledError:
                got = []
            queue.requeue(item.seq for item in got)
        assert payloads(await drain(queue)) == [b"%d" % i for i in range(50)]
