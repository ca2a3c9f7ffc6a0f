"""Redis behind Sentinel: the master is asked of the sentinels by service name, on every connect.

After a failover the old master's connection breaks (or, demoted to a replica, it answers
READONLY): either way the sender drops the connection, backs off and connects again, which asks
the sentinels anew and reaches the promoted replica. A node the sentinels name is checked with
ROLE before anything is written to it: during a failover a sentinel may still name the old
master for a moment.
"""

from __future__ import annotations

import asyncio
import dataclasses

from agent.config.tree import RedisConfig
from agent.messages.redis.connection import RedisTarget, RedisUrl, ServerInfo
from agent.messages.redis.topology import Node
from agent.messages.redis.writer import StreamWriter


class NoMasterError(OSError):
    """No sentinel named a master that says it is one (an OSError: the sender retries it)."""


def sentinel_targets(config: RedisConfig, template: RedisTarget) -> list[RedisTarget]:
    """One target per sentinel: its own credentials, the data nodes' TLS and timeouts."""
    sentinel = config.sentinel
    targets = []
    for address in sentinel.addresses:
        node = Node.parse(address)
        url = RedisUrl(
            host=node.host,
            port=node.port,
            path=None,
            db=0,
            username=sentinel.username or None,
            password=sentinel.password or None,
            tls=template.url.tls,
        )
        scheme = "rediss" if url.tls else "redis"
        description = f"sentinel {scheme}://{node.address}"
        targets.append(dataclasses.replace(template, url=url, description=description))
    return targets


class SentinelWriter(StreamWriter):
    def __init__(
        self,
        template: RedisTarget,
        sentinels: list[RedisTarget],
        master_name: str,
        producer_id: str,
        max_attempts: int,
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            dataclasses.replace(template, description=f"sentinel master {master_name!r}"),
            producer_id,
            max_attempts,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
        self._template = template
        self.sentinels = sentinels
        self.master_name = master_name
        self.master: Node | None = None

    async def connect(self) -> ServerInfo:
        self.disconnect()
        node = await self.find_master()
        target = self._template.at(node.host, node.port)
        connection, server = await target.connect()
        try:
            async with asyncio.timeout(target.command_timeout):
                role = await connection.call(b"ROLE")
        except BaseException:
            connection.close()
            raise
        if not isinstance(role, list) or not role or bytes(role[0]) != b"master":
            connection.close()
            raise NoMasterError(f"{node.address}, named master by the sentinels, is not one yet")
        self.master = node
        self.target = dataclasses.replace(
            target, description=f"{target.description} (sentinel master {self.master_name!r})"
        )
        self.connection, self.server = connection, server
        return server

    async def find_master(self) -> Node:
        """The master the sentinels see up (redis-py's discovery: SENTINEL MASTERS, sentinel by
        sentinel, skipping a master flagged down)."""
        from agent.messages.redis.control import sentinel_master  # redis-py: sentinel mode only

        first = self.sentinels[0]
        try:
            async with asyncio.timeout(
                len(self.sentinels) * (first.connect_timeout + first.command_timeout)
            ):
                host, port = await sentinel_master(self.sentinels, self.master_name)
        except (OSError, TimeoutError) as error:
            raise NoMasterError(f"no sentinel named a master: {error}") from None
        return Node(host, port)
