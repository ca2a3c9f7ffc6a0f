"""The message proxy behind Sentinel (1 master, 1 replica, 3 sentinels, AUTH): the master is
found by name, and when it dies the agent follows the sentinels to the promoted replica with
nothing acknowledged lost and order kept."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.messages.redis.sentinel import SentinelWriter
from tests.harness.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.integration.messages.scaling.conftest import PASSWORD
from tests.integration.messages.scaling.support import (
    check_per_key_order,
    messages_in,
    publishing,
    until,
)
from tests.integration.messages.subscribe.app import ReceivingApp, eventually, subscription
from tests.integration.messages.support import delivered, make_config, post, url

pytestmark = pytest.mark.integration


async def start_pipeline(tmp_path: Path, group: SentinelGroup, *overrides: str) -> MessagePipeline:
    config = make_config(
        tmp_path,
        f"redis://:{PASSWORD}@placeholder:6379/0",  # credentials only: the sentinels say where
        "redis.mode=sentinel",
        f"redis.sentinel.master_name={MASTER_NAME}",
        f"redis.sentinel.addresses={','.join(group.sentinel_addresses)}",
        *overrides,
    )
    pipeline = MessagePipeline(config, Metrics(), Path(config.data_dir))
    await pipeline.start()
    return pipeline


async def test_a_failover_under_load_loses_nothing_acked_and_keeps_order(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    group = sentinel_group
    old_master = group.current_master()
    pipeline = await start_pipeline(tmp_path, group, "redis.wait_replicas=1")
    topics: dict[str, list[str | None]] = {"jobs": [None], "audit": [None]}
    try:
        assert isinstance(pipeline.writer, SentinelWriter)
        async with aiohttp.ClientSession() as http:
            async with publishing(pipeline, http, topics) as publishers:
                await until(lambda: sum(p.total for p in publishers) > 400, 30, "a first load")
                assert pipeline.writer.master is not None
                assert pipeline.writer.master.port == old_master.port
                old_master.kill()
                new_master = group.wait_for_failover(old_master)
                old_master.start()  # rejoins as a replica, so WAIT 1 can be met again
                before = sum(p.total for p in publishers)
                await until(lambda: sum(p.total for p in publishers) > before + 400, 60, "load")
            await delivered(pipeline, timeout=60)
        followed = pipeline.writer.master
        retried = dict(pipeline.sender.retry_reasons)
    finally:
        await pipeline.stop()

    assert all(not p.refused for p in publishers), [p.refused[:3] for p in publishers]
    assert new_master.port != old_master.port
    # The writer ends on the master the sentinels name now: the promoted replica, or, if the
    # sentinels failed over once more on a loaded machine (to the old master, back as a
    # replica by then), that one. It only ever writes to a node they name that says ROLE
    # master, so either way every acked message must be on it.
    current = group.current_master()
    assert followed is not None and followed.port == current.port
    assert retried, "the kill should have failed some batches"
    with current.client(track=False) as client:
        for publisher, topic in zip(publishers, topics, strict=True):
            ids = [m["id"] for m in messages_in(client, f"stream:{topic}")]
            check_per_key_order([publisher], {None: ids}, keyless_ordered=True)


async def test_no_sentinel_reachable_buffers_and_says_why(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    for sentinel in sentinel_group.sentinels:
        sentinel.stop()
    pipeline = await start_pipeline(tmp_path, sentinel_group)
    try:
        await until(lambda: bool(pipeline.sender.last_error), 10, "a connect failure")
        health = pipeline.health()
    finally:
        await pipeline.stop()
    assert health.ready  # publishes are buffered on disk meanwhile
    assert "no sentinel named a master" in health.reason


async def test_a_subscription_follows_the_sentinels_through_a_failover(
    tmp_path: Path, sentinel_group: SentinelGroup
) -> None:
    group = sentinel_group
    app = ReceivingApp()
    await app.start()
    old_master = group.current_master()
    pipeline = await start_pipeline(tmp_path, group, *subscription(app, "tasks"))
    publish = url(pipeline, "/v1/topics/tasks/messages")
    ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(5):
                ids += (await post(http, publish, {"data": {"n": n}}))[1]["ids"]
            await eventually(lambda: set(app.ids()) == set(ids), "delivery before the failover")
            old_master.kill()
            group.wait_for_failover(old_master)
            for n in range(5, 10):
                ids += (await post(http, publish, {"data": {"n": n}}))[1]["ids"]
            await eventually(
                lambda: set(app.ids()) == set(ids), "delivery from the new master", timeout=60
            )
    finally:
        await pipeline.stop()
        await app.stop()
