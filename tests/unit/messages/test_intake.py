from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config.tree import MessagesConfig, TopicConfig
from agent.core.diskqueue.queue import DiskQueue
from agent.messages.codec import BodyError
from agent.messages.intake import Intake, PublishRefused
from agent.messages.record import Record


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[DiskQueue]:
    async with DiskQueue(tmp_path / "q", max_bytes=64 * 1024, when_full="reject") as opened:
        yield opened


async def queued(queue: DiskQueue, wait: float = 1.0) -> list[Record]:
    # get returns once a record is synced; an ack=memory put's sync can take more than 10 ms
    # on a loaded machine (it failed so about once in 150 runs).
    items = await queue.get(100, timeout=wait)
    return [Record.decode(item.data, item.seq) for item in items]


async def test_one_record_per_request_with_generated_ids(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=2)
    result = await intake.publish("t", [(None, 1, None, None), (None, 2, None, None)], "disk")
    (record,) = await queued(queue)
    assert record.message_ids == result.ids and len(record) == 2
    assert result.ids[0] < result.ids[1] and result.ids[0].startswith("msg_")
    assert record.stream == b"stream:t" and record.confirm_token == 0 and not record.tracked


async def test_topic_layouts_come_from_config(queue: DiskQueue) -> None:
    config = MessagesConfig(topics={"raw-topic": TopicConfig(layout="raw", key="r:{topic}")})
    intake = Intake(config, queue, retry_after=1)
    await intake.publish("raw-topic", [(None, "x", None, None)], "memory")
    # ack=memory answers before the writer thread has the record: on a busy machine that
    # takes more than the 10 ms the other tests wait (get returns once one is there).
    (record,) = await queued(queue, wait=10.0)
    assert (record.layout, record.stream) == ("raw", b"r:raw-topic")


async def test_repeated_ids_are_not_queued_twice(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=1)
    first = await intake.publish("t", [("a", 1, None, None), ("b", 2, None, None)], "disk")
    again = await intake.publish(
        "t", [("b", 2, None, None), ("c", 3, None, None), ("c", 3, None, None)], "disk"
    )
    elsewhere = await intake.publish("u", [("a", 1, None, None)], "disk")
    records = await queued(queue)
    assert [r.message_ids for r in records] == [["a", "b"], ["c"], ["a"]]
    assert (first.duplicates, again.duplicates, elsewhere.duplicates) == (0, 2, 0)
    assert again.ids == ["b", "c", "c"] and records[1].tracked


async def test_a_disk_ack_for_a_repeat_waits_until_the_memory_acked_original_is_synced(
    tmp_path: Path,
) -> None:
    async with DiskQueue(tmp_path / "q", lossy_write_delay=60, lossy_sync_interval=60) as queue:
        intake = Intake(MessagesConfig(), queue, retry_after=1)
        await intake.publish("t", [("x", 1, None, None)], "memory")
        assert queue.stats().fsyncs == 0
        repeat = await intake.publish("t", [("x", 1, None, None)], "disk")
        assert repeat.duplicates == 1
        assert queue.stats().fsyncs == 1, "answered only once the original is on disk"


async def test_errors_name_the_index_the_client_sent(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=1)
    await intake.publish("t", [("a", 1, None, None)], "disk")
    with pytest.raises(BodyError) as caught:
        await intake.publish("t", [("a", 1, None, None), ("z", 1, {"data": "x"}, None)], "disk")
    assert caught.value.index == 1 and caught.value.message.startswith("entry 1:")
    assert intake.dedupe.get("t", "z") is None  # a refused request reserves nothing


async def test_a_full_queue_refuses_with_retry_after_and_forgets_the_ids(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=3)
    big = "x" * 3000
    with pytest.raises(PublishRefused) as caught:
        for number in range(100):
            await intake.publish("t", [(f"id-{number}", big, None, None)], "disk")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        503,
        "buffer_full",
        3,
    )
    assert intake.dedupe.get("t", f"id-{number}") is None
    assert intake.dedupe.get("t", "id-0") is not None


async def test_redis_mode_waits_for_the_writer_then_times_out(queue: DiskQueue) -> None:
    config = replace(MessagesConfig(), redis_ack_timeout=0.05)
    intake = Intake(config, queue, retry_after=1)
    with pytest.raises(PublishRefused) as caught:
        await intake.publish("t", [(None, 1, None, None)], "redis")
    assert (caught.value.status, caught.value.code) == (504, "redis_ack_timeout")
    (record,) = await queued(queue)  # still buffered: it will be delivered
    assert record.confirm_token


async def test_redis_mode_answers_with_entry_ids(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=1)
    publish = asyncio.ensure_future(
        intake.publish("t", [(None, 1, None, None), ("k", 2, None, None)], "redis")
    )
    (record,) = await queue_records_soon(queue)
    record.entry_ids = [b"1-0", None]
    record.failures = {1: "WRONGTYPE nope"}
    record.pending = []
    intake.finished(record)
    result = await publish
    assert result.entry_ids == ["1-0", None] and result.failures == {1: "WRONGTYPE nope"}


async def queue_records_soon(queue: DiskQueue) -> list[Record]:
    items = await queue.get(10, timeout=1.0)
    return [Record.decode(item.data, item.seq) for item in items]


def test_ack_modes() -> None:
    intake = Intake(MessagesConfig(ack="memory"), object(), retry_after=1)  # type: ignore[arg-type]
    assert intake.mode(None) == "memory" and intake.mode("redis") == "redis"
    with pytest.raises(BodyError, match="ack must be one of"):
        intake.mode("fsync")


async def test_requests_sharing_ids_in_any_order_store_each_once(queue: DiskQueue) -> None:
    intake = Intake(MessagesConfig(), queue, retry_after=1)
    forward = [("x", 1, None, None), ("y", 2, None, None)]
    backward = [("y", 2, None, None), ("x", 1, None, None)]
    results = await asyncio.wait_for(
        asyncio.gather(*(intake.publish("t", batch, "disk") for batch in (forward, backward) * 3)),
        timeout=5,
    )
    assert sum(result.duplicates for result in results) == 10
    stored = [message_id for record in await queued(queue) for message_id in record.message_ids]
    assert sorted(stored) == ["x", "y"]


class HeldPutQueueDouble:
    """A real disk queue whose first put waits for a signal: holds one request "in progress"
    long enough for others to line up behind its ids, which real timing cannot promise."""

    def __init__(self, queue: DiskQueue) -> None:
        self.queue = queue
        self.release = asyncio.Event()
        self.held = False

    async def put(self, record: bytes, *, durable: bool = True, decoded: object = None) -> int:
        if not self.held:
            self.held = True
            await self.release.wait()
        return await self.queue.put(record, durable=durable, decoded=decoded)

    async def sync(self) -> None:
        await self.queue.sync()


async def test_requests_waiting_on_each_others_ids_do_not_deadlock(queue: DiskQueue) -> None:
    double = HeldPutQueueDouble(queue)
    intake = Intake(MessagesConfig(), double, retry_after=1)  # type: ignore[arg-type]
    first = asyncio.ensure_future(
        intake.publish("t", [("z", 0, None, None), ("w", 0, None, None)], "disk")
    )
    await asyncio.sleep(0)
    crossing = [
        asyncio.ensure_future(
            intake.publish(
                "t", [("x", 1, None, None), ("z", 0, None, None), ("y", 2, None, None)], "disk"
            )
        ),
        asyncio.ensure_future(
            intake.publish(
                "t", [("y", 2, None, None), ("w", 0, None, None), ("x", 1, None, None)], "disk"
            )
        ),
    ]
    await asyncio.sleep(0.01)
    double.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *crossing), timeout=5)
    stored = sorted(i for record in await queued(queue) for i in record.message_ids)
    assert stored == ["w", "x", "y", "z"]
    # Whichever crossing request went first stored x and y; the other repeats all three ids.
    assert results[0].duplicates == 0
    assert sorted(result.duplicates for result in results[1:]) == [1, 3]


async def test_redis_mode_answers_each_message_of_a_partitioned_request(queue: DiskQueue) -> None:
    # The record's entries are grouped by partition, so its order is not the request's: each
    # message must still get its own entry id and failure, even from a record read from disk.
    config = MessagesConfig(topics={"t": TopicConfig(partitions=3)})
    intake = Intake(config, queue, retry_after=1)
    envelopes = [(f"id{i}", i, None, {"partitionKey": f"k{i % 4}"}) for i in range(8)]
    publish = asyncio.ensure_future(intake.publish("t", envelopes, "redis"))
    (record,) = await queue_records_soon(queue)
    assert record.stream == b"" and record.message_ids != [f"id{i}" for i in range(8)]
    record.entry_ids = [f"{message_id[2:]}-0".encode() for message_id in record.message_ids]
    failed = record.message_ids.index("id5")
    record.entry_ids[failed] = None
    record.failures = {failed: "WRONGTYPE nope"}
    record.pending = []
    intake.finished(record)
    result = await publish
    assert result.entry_ids == [None if i == 5 else f"{i}-0" for i in range(8)]
    assert result.failures == {5: "WRONGTYPE nope"}
