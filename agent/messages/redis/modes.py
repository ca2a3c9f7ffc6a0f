"""One writer per `redis.mode`: one server, a Redis Cluster, or the master Sentinel names."""

from __future__ import annotations

from agent.config.tree import RedisConfig
from agent.messages.redis.cluster import ClusterWriter
from agent.messages.redis.connection import RedisTarget
from agent.messages.redis.sentinel import SentinelWriter, sentinel_targets
from agent.messages.redis.topology import seed_nodes
from agent.messages.redis.writer import StreamWriter


def writer_for(config: RedisConfig, producer_id: str, max_attempts: int) -> StreamWriter:
    target = RedisTarget.from_config(config)
    replicas, timeout = config.wait_replicas, config.wait_timeout
    if config.mode == "cluster":
        return ClusterWriter(
            target,
            seed_nodes(config),
            producer_id,
            max_attempts,
            wait_replicas=replicas,
            wait_timeout=timeout,
        )
    if config.mode == "sentinel":
        sentinels = sentinel_targets(config, target)
        name = config.sentinel.master_name
        return SentinelWriter(
            target,
            sentinels,
            name,
            producer_id,
            max_attempts,
            wait_replicas=replicas,
            wait_timeout=timeout,
        )
    return StreamWriter(
        target, producer_id, max_attempts, wait_replicas=replicas, wait_timeout=timeout
    )
