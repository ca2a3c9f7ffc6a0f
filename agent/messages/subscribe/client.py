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

import urllib.parse
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from agent.config.tree import Config, RedisConfig
from agent.messages.redis.topology import Node
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
        options.update(_tls_options(settings))
    if settings.mode == "sentinel":
        return _sentinel_master(settings, options, tls=tls)
    if settings.mode == "cluster":
        return _cluster(settings, options, tls=tls)
    return aioredis.Redis.from_url(settings.url, **options)


def _cluster(settings: RedisConfig, options: dict[str, Any], *, tls: bool) -> RedisCluster:
    """A cluster client seeded like the publisher: `redis.seeds`, else `redis.url`'s host."""
    credentials = _credentials_and_db(settings.url)
    credentials.pop("db")  # a cluster has database 0 only
    parsed = urllib.parse.urlsplit(settings.url)
    seeds = [Node.parse(address) for address in settings.seeds]
    if not seeds:
        seeds = [Node(parsed.hostname or "localhost", parsed.port or 6379)]
    return RedisCluster(
        startup_nodes=[ClusterNode(node.host, node.port) for node in seeds],
        ssl=tls,
        **options,
        **credentials,
    )


def _tls_options(settings: RedisConfig) -> dict[str, Any]:
    tls = settings.tls
    return {
        "ssl_ca_certs": tls.ca_file or None,
        "ssl_certfile": tls.cert_file or None,
        "ssl_keyfile": tls.key_file or None,
        "ssl_cert_reqs": "none" if tls.insecure_skip_verify else "required",
    }


def _sentinel_master(
    settings: RedisConfig, options: dict[str, Any], *, tls: bool
) -> aioredis.Redis:
    """A client of the master the sentinels name; `redis.url` gives only credentials and db."""
    data = _credentials_and_db(settings.url)
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.command_timeout,
        "username": settings.sentinel.username or None,
        "password": settings.sentinel.password or None,
    }
    if tls:
        sentinel_options.update(ssl=True, **_tls_options(settings))
        options = {**options, "ssl": True}
    nodes = [Node.parse(address) for address in settings.sentinel.addresses]
    sentinel = Sentinel(
        [(node.host, node.port) for node in nodes],
        sentinel_kwargs=sentinel_options,
        **options,
        **data,
    )
    master: aioredis.Redis = sentinel.master_for(settings.sentinel.master_name)
    return master


def _credentials_and_db(url: str) -> dict[str, Any]:
    parsed = urllib.parse.urlsplit(url)
    data: dict[str, Any] = {}
    if parsed.username:
        data["username"] = urllib.parse.unquote(parsed.username)
    if parsed.password:
        data["password"] = urllib.parse.unquote(parsed.password)
    path = parsed.path.strip("/")
    data["db"] = int(path) if path.isdigit() else 0
    return data


async def close_client(client: RedisClient) -> None:
    """Close the client and, in sentinel mode, its connections to the sentinels."""
    await client.aclose()
    if isinstance(client, RedisCluster):
        return
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        for sentinel in manager.sentinels:
            await sentinel.aclose()
