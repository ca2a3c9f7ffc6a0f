"""The redis section's modes and the topics' partitions: read from env, checked once at start."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from agent.config.load import ConfigError, load_config
from agent.messages.redis.cluster import ClusterWriter
from agent.messages.redis.modes import writer_for
from agent.messages.redis.sentinel import SentinelWriter
from agent.messages.redis.topology import Node
from agent.messages.redis.writer import StreamWriter
from agent.messages.subscribe.client import redis_client
from agent.messages.subscribe.streams import moves_are_atomic


def problems(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    return "\n".join(caught.value.problems)


def test_cluster_mode_and_seeds_from_env() -> None:
    config = load_config(
        environ={
            "SIDECAR_REDIS_MODE": "cluster",
            "SIDECAR_REDIS_SEEDS": "10.0.0.1:7000, 10.0.0.2:7000",
            "REDIS_URL": "rediss://agent:secret@ignored:1/0",
        }
    )
    writer = writer_for(config.redis, "p", 3)
    assert isinstance(writer, ClusterWriter)
    assert writer.seeds == [Node("10.0.0.1", 7000), Node("10.0.0.2", 7000)]
    assert writer.target.url.username == "agent"  # every node gets the URL's credentials
    assert writer.target.url.tls
    assert "secret" not in writer.target.description


def test_cluster_mode_without_seeds_starts_from_the_url() -> None:
    config = load_config(environ={"SIDECAR_REDIS_MODE": "cluster", "REDIS_URL": "redis://h:7001"})
    writer = writer_for(config.redis, "p", 3)
    assert isinstance(writer, ClusterWriter)
    assert writer.seeds == [Node("h", 7001)]


def test_sentinel_mode_from_env() -> None:
    config = load_config(
        environ={
            "SIDECAR_REDIS_MODE": "sentinel",
            "SIDECAR_REDIS_SENTINEL_ADDRESSES": "s1:26379,s2:26379",
            "SIDECAR_REDIS_SENTINEL_MASTER_NAME": "orders",
            "SIDECAR_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        }
    )
    writer = writer_for(config.redis, "p", 3)
    assert isinstance(writer, SentinelWriter)
    assert writer.master_name == "orders"
    assert [s.url.host for s in writer.sentinels] == ["s1", "s2"]
    assert writer.sentinels[0].url.password == "sentinel-secret"


def test_standalone_is_the_default() -> None:
    writer = writer_for(load_config(environ={}).redis, "p", 3)
    assert type(writer) is StreamWriter


def test_a_bad_mode_names_the_accepted_ones() -> None:
    text = problems({"SIDECAR_REDIS_MODE": "clustered"})
    assert "redis.mode" in text and "sentinel" in text


def test_sentinel_mode_needs_sentinels() -> None:
    assert "redis.sentinel.addresses: sentinel mode needs" in problems(
        {"SIDECAR_REDIS_MODE": "sentinel"}
    )


def test_subscriptions_in_cluster_mode_get_a_cluster_client_seeded_like_the_writer() -> None:
    config = load_config(
        environ={
            "SIDECAR_REDIS_MODE": "cluster",
            "REDIS_URL": "redis://agent:pw@h:7001/0",
            "SIDECAR_REDIS_SEEDS": "10.0.0.1:7000,10.0.0.2:7000",
            "SIDECAR_MESSAGES_SUBSCRIPTIONS": "[{topic: orders, endpoint: 'http://127.0.0.1:8080/in'}]",
        }
    )
    client = redis_client(config, 4)
    assert isinstance(client, RedisCluster) and not moves_are_atomic(client)
    assert [(node.host, node.port) for node in client.startup_nodes] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7000),
    ]
    assert moves_are_atomic(redis_client(load_config(environ={}), 4))


def test_bad_seeds_and_partitions_are_named() -> None:
    text = problems(
        {
            "SIDECAR_REDIS_SEEDS": "10.0.0.1,h:99999",
            "SIDECAR_MESSAGES_TOPICS": "{orders: {partitions: 0}}",
        }
    )
    assert "redis.seeds[0]: '10.0.0.1' is not host:port" in text
    assert "redis.seeds[1]: 'h:99999' is not host:port" in text
    assert "messages.topics.orders.partitions: must be 1 to 1024, got 0" in text


def test_cluster_mode_refuses_a_unix_socket() -> None:
    text = problems({"SIDECAR_REDIS_MODE": "cluster", "REDIS_URL": "unix:///run/redis.sock"})
    assert "redis.url: cluster mode needs redis://" in text
