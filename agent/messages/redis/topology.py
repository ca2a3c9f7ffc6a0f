"""Redis Cluster's slot map: which master serves each of the 16384 slots, and how to learn it.

The map comes from `CLUSTER SLOTS`, asked of the seeds (then of nodes already known) over the
same handshake as every connection (AUTH with an ACL user, TLS), so the control plane needs no
second client library: redis-py would cost the agent its RSS and a second TLS set-up. Redirect
replies (`MOVED <slot> <host>:<port>`, `ASK ...`) are parsed here too; the writer decides what
they change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agent.config.tree import RedisConfig
from agent.messages.redis.connection import RedisTarget, parse_redis_url
from agent.messages.redis.slots import SLOTS, key_slot


class TopologyError(OSError):
    """No seed or known node answered with a slot map (an OSError: the sender retries it)."""


@dataclass(frozen=True, slots=True)
class Node:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, address: str) -> Node:
        """`host:port` (IPv6 hosts in brackets)."""
        host, _, port = address.rpartition(":")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True, slots=True)
class Redirect:
    kind: str  # MOVED or ASK
    slot: int
    node: Node


def parse_redirect(message: str) -> Redirect | None:
    """`MOVED 3999 127.0.0.1:6381` → Redirect; None for any other error."""
    parts = message.split(" ")
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK") or not parts[1].isdigit():
        return None
    try:
        return Redirect(parts[0], int(parts[1]), Node.parse(parts[2]))
    except ValueError:
        return None


class SlotMap:
    """Slot → master. Unassigned slots map to None (their writes wait for the cluster)."""

    def __init__(self, owners: list[Node | None]) -> None:
        if len(owners) != SLOTS:
            raise ValueError(f"a slot map has {SLOTS} slots, got {len(owners)}")
        self._owners = owners
        # Asked on every send (are all masters connected?): worked out once, not per call.
        self._masters = frozenset(node for node in owners if node is not None)

    @classmethod
    def from_cluster_slots(cls, reply: Any, asked: Node) -> SlotMap:
        """Parse `CLUSTER SLOTS`: [[start, end, [host, port, id...], replicas...], ...]. An
        empty host means the node that answered (Redis says so when it does not know its own
        address)."""
        owners: list[Node | None] = [None] * SLOTS
        if not isinstance(reply, list):
            raise TopologyError(f"CLUSTER SLOTS replied {type(reply).__name__}, not a list")
        for entry in reply:
            start, end, master = entry[0], entry[1], entry[2]
            host = bytes(master[0]).decode() or asked.host
            if host == "?":
                continue  # a master whose address Redis does not know yet
            node = Node(host, int(master[1]))
            for slot in range(int(start), int(end) + 1):
                owners[slot] = node
        return cls(owners)

    def node_for(self, key: bytes) -> Node | None:
        return self._owners[key_slot(key)]

    def owner(self, slot: int) -> Node | None:
        return self._owners[slot]

    def masters(self) -> frozenset[Node]:
        return self._masters

    def slot_counts(self) -> dict[Node, int]:
        counts: dict[Node, int] = {}
        for node in self._owners:
            if node is not None:
                counts[node] = counts.get(node, 0) + 1
        return counts

    @property
    def complete(self) -> bool:
        return None not in self._owners


def seed_nodes(config: RedisConfig) -> list[Node]:
    """Where cluster mode starts: `redis.seeds`, else `redis.url`'s host."""
    seeds = [Node.parse(address) for address in config.seeds]
    if seeds:
        return seeds
    url = parse_redis_url(config.url)
    return [Node(url.host or "localhost", url.port or 6379)]


async def discover(template: RedisTarget, candidates: list[Node]) -> SlotMap:
    """Ask each candidate in turn for CLUSTER SLOTS (through redis-py); the first answer wins."""
    from agent.messages.redis.control import cluster_slots  # redis-py: cluster mode only

    problems: list[str] = []
    for node in candidates:
        try:
            async with asyncio.timeout(template.connect_timeout + template.command_timeout):
                reply = await cluster_slots(template.at(node.host, node.port))
            return SlotMap.from_cluster_slots(reply, node)
        except (OSError, TimeoutError, TopologyError) as error:
            problems.append(f"{node.address}: {type(error).__name__}: {error}")
    raise TopologyError("no node gave a slot map: " + "; ".join(problems or ["no nodes known"]))
