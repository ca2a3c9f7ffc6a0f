"""The subscriptions' Redis client (redis-py's asyncio client, replies parsed by hiredis), for
every `redis.mode`.

In sentinel mode the client asks the sentinels for the current master whenever it opens a
connection, so after a failover the consumers' next command (they retry Redis errors with a
backoff) reaches the new master. In cluster mode it is redis-py's cluster client: each command
goes to the master of its key's slot and MOVED/ASK are followed. There a dead letter's move
(RPUSH to `dlq:<topic>`, XACK on the stream) cannot be one script, the two keys being on
different masters: see `streams.moves_are_atomic`.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from agent.config.tree import Config, RedisConfig
from agent.messages.redis.connection import parse_redis_url
from agent.messages.redis.control import tls_options
from agent.messages.redis.topology import Node, seed_nodes
from agent.messages.subscribe.consumer import BLOCK_MS
from agent.messages.subscribe.streams import RedisClient


def redis_client(config: Config, max_connections: int) -> RedisClient:
    settings = config.redis
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        # A blocking XREADGROUP waits BLOCK_MS before its reply: the timeout must outlast it.
        "socket_timeout": settings.command_timeout + BLOCK_MS / 1000,
        "max_connections": max_connections,
    }
    tls = settings.url.startswith("rediss://")
    if tls:
        options.update(tls_options(settings.tls))
    if settings.mode == "sentinel":
        return _sentinel_master(settings, options, tls=tls)
    if settings.mode == "cluster":
        return _cluster(settings, options, tls=tls)
    return aioredis.Redis.from_url(settings.url, **options)


def _cluster(settings: RedisConfig, options: dict[str, Any], *, tls: bool) -> RedisCluster:
    """A cluster client seeded like the publisher (a cluster has database 0 only)."""
    url = parse_redis_url(settings.url)
    return RedisCluster(
        startup_nodes=[ClusterNode(node.host, node.port) for node in seed_nodes(settings)],
        ssl=tls,
        username=url.username,
        password=url.password,
        **options,
    )


def _sentinel_master(
    settings: RedisConfig, options: dict[str, Any], *, tls: bool
) -> aioredis.Redis:
    """A client of the master the sentinels name; `redis.url` gives only credentials and db."""
    url = parse_redis_url(settings.url)
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.command_timeout,
        "username": settings.sentinel.username or None,
        "password": settings.sentinel.password or None,
    }
    if tls:
        sentinel_options.update(ssl=True, **tls_options(settings.tls))
        options = {**options, "ssl": True}
    nodes = [Node.parse(address) for address in settings.sentinel.addresses]
    sentinel = Sentinel(
        [(node.host, node.port) for node in nodes],
        sentinel_kwargs=sentinel_options,
        **options,
        username=url.username,
        password=url.password,
        db=url.db,
    )
    master: aioredis.Redis = sentinel.master_for(settings.sentinel.master_name)
    return master


async def close_client(client: RedisClient) -> None:
    """Close the client and, in sentinel mode, its connections to the sentinels."""
    await client.aclose()
    if isinstance(client, RedisCluster):
        return
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        for sentinel in manager.sentinels:
            await sentinel.aclose()
