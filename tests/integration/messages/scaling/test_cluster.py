"""The message proxy on a real Redis Cluster (3 masters, 3 replicas, AUTH): every stream on the
master that owns its slot, partitions spread over the masters, and nothing acknowledged lost
or reordered per key while a master dies or a slot moves under load."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import aiohttp
import orjson
import pytest

from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.messages.redis.cluster import ASK_ROUTE_SECONDS, ClusterWriter
from agent.messages.redis.slots import key_slot
from tests.harness.redis_cluster import ReplicatedRedisCluster
from tests.integration.messages.scaling.conftest import PASSWORD
from tests.integration.messages.scaling.support import (
    check_per_key_order,
    messages_in,
    publishing,
    until,
)
from tests.integration.messages.support import delivered, make_config, post, url

pytestmark = pytest.mark.integration

PARTITIONS = 8
TOPICS_YAML = f"""
messages:
  topics:
    orders: {{partitions: {PARTITIONS}}}
    events: {{partitions: 4}}
"""


async def start_pipeline(
    tmp_path: Path, cluster: ReplicatedRedisCluster, *overrides: str
) -> MessagePipeline:
    first = cluster.nodes[0]
    config = make_config(
        tmp_path,
        f"redis://:{PASSWORD}@{first.host}:{first.port}/0",
        "redis.mode=cluster",
        f"redis.seeds={','.join(cluster.seeds[:2])}",
        *overrides,
        yaml=TOPICS_YAML,
    )
    pipeline = MessagePipeline(config, Metrics(), Path(config.data_dir))
    await pipeline.start()
    return pipeline


def stored_by_key(
    cluster: ReplicatedRedisCluster, streams: list[str]
) -> dict[str | None, list[str]]:
    """Message ids per partition key (None: no key), in stream order, from every stream."""
    client = cluster.client()
    stored: dict[str | None, list[str]] = {}
    for stream in streams:
        for message in messages_in(client, stream):
            key = (message.get("metadata") or {}).get("partitionKey")
            stored.setdefault(key, []).append(message["id"])
    return stored


async def test_streams_and_partitions_land_on_the_masters_that_own_their_slots(
    tmp_path: Path, replicated_cluster: ReplicatedRedisCluster
) -> None:
    replicated_cluster.client().set("stream:not-a-stream", "a string")  # WRONGTYPE for XADD
    pipeline = await start_pipeline(tmp_path, replicated_cluster)
    try:
        async with aiohttp.ClientSession() as http:
            wrong = url(pipeline, "/v1/topics/not-a-stream/messages")
            status, _ = await post(http, wrong, {"data": 1})
            assert status == 202
            for index in range(12):
                body = [{"data": {"n": n}} for n in range(20)]
                target = url(pipeline, f"/v1/topics/topic-{index}/messages?ack=redis")
                status, _ = await post(http, target, body)
                assert status == 201
            keys = [f"customer-{k}" for k in range(40)]
            for round_ in range(5):
                body = [{"data": {"round": round_}, "key": key} for key in keys]
                status, _ = await post(http, url(pipeline, "/v1/topics/orders/messages"), body)
                assert status == 202
            # ?ack=redis on a request spread over partitions (and so over masters): each
            # message is answered with its own entry id.
            confirmed = [{"data": n, "key": f"event-{n % 5}"} for n in range(15)]
            target = url(pipeline, "/v1/topics/events/messages?ack=redis")
            status, answer = await post(http, target, confirmed)
            assert status == 201
        await delivered(pipeline)
        nodes = pipeline.writer.nodes()
        metrics = pipeline.health().details
        dead_lettered = pipeline.dead_letters.file.written
    finally:
        await pipeline.stop()

    cluster = replicated_cluster
    masters = cluster.masters()
    streams = [f"stream:topic-{i}" for i in range(12)]
    streams += [f"stream:orders:{p}" for p in range(PARTITIONS)]
    held: dict[int, set[str]] = {}
    for master in masters:
        with master.client(track=False) as client:
            held[master.port] = {key.decode() for key in client.keys("stream:*")}
    owners = set()
    for stream in streams:
        owner = cluster.master_of_key(stream).port
        owners.add(owner)
        assert [port for port, keys in held.items() if stream in keys] == [owner], stream
    assert len(owners) == 3, "the streams should spread over all three masters"

    stored = stored_by_key(cluster, [f"stream:orders:{p}" for p in range(PARTITIONS)])
    client = cluster.client()
    for key in keys:
        partition = zlib.crc32(key.encode()) % PARTITIONS
        in_partition = [m for m in messages_in(client, f"stream:orders:{partition}")
                        if m["metadata"]["partitionKey"] == key]  # fmt: skip
        assert [m["data"]["round"] for m in in_partition] == [0, 1, 2, 3, 4]
        assert len(stored[key]) == 5  # and in no other partition
    for index in range(12):
        assert [m["data"]["n"] for m in messages_in(client, f"stream:topic-{index}")] == list(
            range(20)
        )

    for n, (message_id, entry_id) in enumerate(
        zip(answer["ids"], answer["entry_ids"], strict=True)
    ):
        stream = f"stream:events:{zlib.crc32(f'event-{n % 5}'.encode()) % 4}"
        ((_, fields),) = client.xrange(stream, min=entry_id, max=entry_id)
        assert orjson.loads(fields[b"data"])["id"] == message_id

    assert {node.address for node in nodes} == {f"{m.host}:{m.port}" for m in masters}
    assert sum(node.slots for node in nodes) == 16384
    assert all(node.connected and node.sent > 0 for node in nodes)
    assert len(metrics["redis_nodes"]) == 3
    # The dead letter's list goes to the master of its own slot (RPUSH follows the map too).
    assert dead_lettered == 1
    assert client.llen("dlq:not-a-stream") == 1


async def test_a_master_killed_under_load_loses_nothing_acked_and_keeps_order_per_key(
    tmp_path: Path, replicated_cluster: ReplicatedRedisCluster
) -> None:
    cluster = replicated_cluster
    # wait_replicas=1: a batch is acked once a replica has it, so the promoted replica has
    # everything acked (without it, Redis' asynchronous replication may drop the last writes).
    # max_in_flight=1: the order is strict, as checked below. Until the replica is promoted
    # the other masters answer CLUSTERDOWN too (about a second); a pipelined batch behind a
    # refused one can reach its master once the cluster is ok again and land first (the
    # window of delivery-guarantees.md, "Order").
    pipeline = await start_pipeline(
        tmp_path, cluster, "redis.wait_replicas=1", "messages.max_in_flight=1"
    )
    topics: dict[str, list[str | None]] = {
        "orders": [f"k{k}" for k in range(24)],
        "events": [None],
        "plain-a": [None],
        "plain-b": [None],
    }
    try:
        async with aiohttp.ClientSession() as http:
            async with publishing(pipeline, http, topics) as publishers:
                await until(lambda: sum(p.total for p in publishers) > 600, 30, "a first load")
                victim = cluster.master_of_key("stream:orders:0")
                victim.kill()
                before = sum(p.total for p in publishers)
                promoted = cluster.wait_for_failover(victim)
                victim.start()  # back as a replica of the promoted node: WAIT can succeed
                await until(lambda: sum(p.total for p in publishers) > before + 600, 60, "load")
            await delivered(pipeline, timeout=60)
        retried = dict(pipeline.sender.retry_reasons)
        assert pipeline.dead_letters.file.written == 0
    finally:
        await pipeline.stop()

    assert all(not p.refused for p in publishers), [p.refused[:3] for p in publishers]
    assert promoted.port != victim.port
    assert retried, "the kill should have failed some batches"
    partition_streams = [f"stream:orders:{p}" for p in range(PARTITIONS)]
    check_per_key_order(
        publishers[:1], stored_by_key(cluster, partition_streams), keyless_ordered=False
    )
    client = cluster.client()
    for publisher, topic in zip(publishers[2:], ["plain-a", "plain-b"], strict=True):
        ids = [m["id"] for m in messages_in(client, f"stream:{topic}")]
        check_per_key_order([publisher], {None: ids}, keyless_ordered=True)
    events = stored_by_key(cluster, [f"stream:events:{p}" for p in range(4)])
    check_per_key_order(publishers[1:2], events, keyless_ordered=False)


async def test_a_slot_moved_under_load_is_followed_and_loses_nothing(
    tmp_path: Path, replicated_cluster: ReplicatedRedisCluster
) -> None:
    cluster = replicated_cluster
    pipeline = await start_pipeline(tmp_path, cluster)
    topics: dict[str, list[str | None]] = {"moving": [None], "staying": [None]}
    slot = key_slot(b"stream:moving")
    try:
        async with aiohttp.ClientSession() as http:
            async with publishing(pipeline, http, topics) as publishers:
                await until(lambda: publishers[0].total > 300, 30, "a first load")
                source = cluster.master_of_slot(slot)
                target = next(m for m in cluster.masters() if m.port != source.port)
                moved = await asyncio.to_thread(cluster.migrate_slot, slot, target)
                before = publishers[0].total
                await until(lambda: publishers[0].total > before + 300, 30, "load after")
            # An ASK sends the stream's entries to the new node for a while; the first write
            # after that asks the map's owner again, which answers MOVED: the map is relearned.
            await asyncio.sleep(ASK_ROUTE_SECONDS + 0.1)
            status, _ = await post(http, url(pipeline, "/v1/topics/moving/messages"), {"data": 0})
            assert status == 202
            await delivered(pipeline, timeout=60)
        retried = dict(pipeline.sender.retry_reasons)
        assert isinstance(pipeline.writer, ClusterWriter)
        writer_owner = pipeline.writer.slots.owner(slot) if pipeline.writer.slots else None
    finally:
        await pipeline.stop()

    assert moved == 1  # the stream itself moved
    assert {"MOVED", "ASK"} & set(retried), retried
    assert writer_owner is not None and writer_owner.port == target.port
    assert cluster.master_of_key("stream:moving").port == target.port
    client = cluster.client()
    for publisher, topic in zip(publishers, topics, strict=True):
        ids = [m["id"] for m in messages_in(client, f"stream:{topic}")]
        check_per_key_order([publisher], {None: ids}, keyless_ordered=True)
