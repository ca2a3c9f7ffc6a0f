"""Cluster mode over TLS as an ACL user: the agent's slot map (redis-py's control client), its
XADD connections (its own RESP client) and the redirects all use the TLS ports the nodes
announce to TLS clients, with the user's own password, and every message lands."""

from __future__ import annotations

import zlib
from pathlib import Path

import aiohttp
import orjson
import pytest

from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from tests.harness.pki import make_pki
from tests.harness.redis_cluster import ReplicatedRedisCluster
from tests.integration.messages.scaling.conftest import PASSWORD
from tests.integration.messages.support import delivered, make_config, post, url

pytestmark = pytest.mark.integration

USER, USER_PASSWORD = "publisher", "publisher-secret"
TOPICS_YAML = "messages:\n  topics:\n    orders: {partitions: 6}\n"


def add_user(cluster: ReplicatedRedisCluster) -> None:
    """An ACL user (ACLs are per node in a cluster) who may only touch the agent's keys."""
    for node in cluster.nodes:
        with node.client(track=False) as client:
            client.execute_command(
                "ACL", "SETUSER", USER, "on", f">{USER_PASSWORD}", "~stream:*", "~dlq:*",
                "+@all", "-@dangerous", "+cluster|slots", "+info",
            )  # fmt: skip


async def test_a_cluster_over_tls_as_an_acl_user(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    cluster = ReplicatedRedisCluster(
        tmp_path / "cluster", masters=3, replicas=0, password=PASSWORD, tls=pki
    )
    try:
        cluster.start()
        add_user(cluster)
        config = make_config(
            tmp_path,
            f"rediss://{USER}:{USER_PASSWORD}@127.0.0.1:{cluster.tls_ports[0]}/0",
            "redis.mode=cluster",
            f"redis.seeds=127.0.0.1:{cluster.tls_ports[1]}",
            f"redis.tls.ca_file={pki / 'ca.crt'}",
            yaml=TOPICS_YAML,
        )
        pipeline = MessagePipeline(config, Metrics(), Path(config.data_dir))
        await pipeline.start()
        try:
            async with aiohttp.ClientSession() as http:
                body = [{"data": n, "key": f"customer-{n % 9}"} for n in range(60)]
                target = url(pipeline, "/v1/topics/orders/messages?ack=redis")
                status, answer = await post(http, target, body)
                assert status == 201, answer
            await delivered(pipeline)
            nodes = pipeline.writer.nodes()
        finally:
            await pipeline.stop()

        tls_addresses = {f"127.0.0.1:{port}" for port in cluster.tls_ports}
        assert {node.address for node in nodes} == tls_addresses
        assert all(node.connected and node.sent > 0 for node in nodes)
        client = cluster.client()
        for n, entry_id in enumerate(answer["entry_ids"]):
            stream = f"stream:orders:{zlib.crc32(f'customer-{n % 9}'.encode()) % 6}"
            ((_, fields),) = client.xrange(stream, min=entry_id, max=entry_id)
            assert orjson.loads(fields[b"data"])["data"] == n
    finally:
        cluster.close()
