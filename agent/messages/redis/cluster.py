"""Writing to a Redis Cluster: each batch split by master, sent to all of them at once.

One pipelined RespConnection per master. `send` routes every entry by its stream's slot (a
partitioned record's entries may name different streams), writes each master's share as one
pipelined write and hands the sender one future with every reply in the batch's own order, so
the sender's ordered lane and `settle` work exactly as with one server. Per stream, order
holds: a stream lives on one master, and its entries go there in batch order.

Redirects: `MOVED` means the map is stale (a reshard or a failover): the entry is retried and
the map is asked for again before the next send. `ASK` means the slot is migrating and this
key has left: the stream's next entries go to the named node, each after `ASKING`, until the
map shows the move done. A master that is down fails its share of the batch like a lost
connection (every other master's replies still count); the retry rediscovers the map, which
names the promoted replica once the cluster has failed over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.messages.record import Record
from agent.messages.redis.connection import RedisTarget, ServerInfo
from agent.messages.redis.resp import ConnectionLostError, ReplyError, RespConnection
from agent.messages.redis.resp import encode_command as _encode
from agent.messages.redis.slots import stream_of
from agent.messages.redis.topology import Node, SlotMap, discover, parse_redirect
from agent.messages.redis.writer import (
    BatchOutcome,
    NodeStatus,
    ReplyFuture,
    SentBatch,
    StreamWriter,
    with_idmp,
)

_ASKING = _encode((b"ASKING",))
_NO_OWNER = "CLUSTERDOWN Hash slot not served"
ASK_ROUTE_SECONDS = 0.5  # how long an ASK names a stream's node before the owner is asked again


@dataclass(slots=True)
class _Share:
    """One master's part of a batch: its wire bytes and where its replies go. `runs` holds
    (batch reply index, share reply index, count) for replies that land side by side; an
    ASKING's reply belongs to no entry and is in no run."""

    parts: list[bytes | memoryview] = field(default_factory=list)
    runs: list[list[int]] = field(default_factory=list)
    replies: int = 0

    def add(self, part: bytes | memoryview, position: int, count: int) -> None:
        self.parts.append(part)
        last = self.runs[-1] if self.runs else None
        if last is not None and last[0] + last[2] == position and last[1] + last[2] == self.replies:
            last[2] += count
        else:
            self.runs.append([position, self.replies, count])
        self.replies += count

    def add_unanswered(self, part: bytes) -> None:
        self.parts.append(part)
        self.replies += 1

    @property
    def entries(self) -> int:
        return sum(run[2] for run in self.runs)

    def place(self, got: list[Any], merged: list[Any]) -> None:
        """Copy this share's replies into the batch's (None where the node never answered)."""
        for position, first, count in self.runs:
            piece = got[first : first + count]
            if len(piece) < count:
                piece += [None] * (count - len(piece))
            merged[position : position + count] = piece


_Shares = dict[Node | None, _Share]


class ClusterWriter(StreamWriter):
    def __init__(
        self,
        template: RedisTarget,
        seeds: list[Node],
        producer_id: str,
        max_attempts: int,
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        cluster_url = dataclasses.replace(template.url, db=0)  # a cluster has database 0 only
        names = ",".join(node.address for node in seeds)
        scheme = "rediss" if template.url.tls else "redis"
        described = dataclasses.replace(
            template, url=cluster_url, description=f"{scheme}-cluster://{names}"
        )
        super().__init__(
            described,
            producer_id,
            max_attempts,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
        self.seeds = seeds
        self.slots: SlotMap | None = None
        self.links: dict[Node, RespConnection] = {}
        self._servers: dict[Node, ServerInfo] = {}
        # stream → (node an ASK named, until when): a few batches go there directly, then the
        # owner in the map is asked again, which answers ASK again or, once the move is done,
        # MOVED, and the map is refreshed.
        self._asking: dict[bytes, tuple[Node, float]] = {}
        self._stale = True
        self.written_by_node: Counter[Node] = Counter()
        self.failed_by_node: Counter[Node] = Counter()

    @property
    def connected(self) -> bool:
        if self._stale or self.slots is None:
            return False
        return all(
            (link := self.links.get(node)) is not None and not link.closed
            for node in self.slots.masters()
        )

    async def connect(self) -> ServerInfo:
        """Learn the slot map, keep the open links to masters in it, open the missing ones.
        Raises OSError/TimeoutError/ReplyError when a master cannot be reached (the sender
        backs off and tries again: during a failover, until the replica is promoted)."""
        slots = await discover(self.target, self._discovery_order())
        masters = slots.masters()
        for node in list(self.links):
            if node not in masters or self.links[node].closed:
                self.links.pop(node).close()
        missing = [node for node in masters if node not in self.links]
        opened = await asyncio.gather(*map(self._open, missing), return_exceptions=True)
        failures: list[BaseException] = []
        for node, result in zip(missing, opened, strict=True):
            if isinstance(result, BaseException):
                failures.append(result)
            else:
                self.links[node], self._servers[node] = result
        self.slots = slots
        self._asking = {
            stream: (node, until)
            for stream, (node, until) in self._asking.items()
            if node in masters and slots.node_for(stream) != node
        }
        if failures:
            raise failures[0]
        self._stale = False
        versions = [self._servers[node].version for node in masters]
        self.server = ServerInfo(min(versions)) if versions else None
        self.connection = self.links[next(iter(masters))] if masters else None
        if self.server is None:
            raise OSError("the cluster serves no slots")
        return self.server

    async def _open(self, node: Node) -> tuple[RespConnection, ServerInfo]:
        return await self.target.at(node.host, node.port).connect()

    def _discovery_order(self) -> list[Node]:
        """Masters we know first (the map is most likely current there), then the seeds."""
        known = list(self.slots.masters()) if self.slots else []
        return list(dict.fromkeys(known + self.seeds))

    def disconnect(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()
        self.connection = None
        self._stale = True

    def connection_for(self, key: bytes) -> RespConnection | None:
        node = self._asked(key) or (self.slots.node_for(key) if self.slots else None)
        return self.links.get(node) if node is not None else None

    def _asked(self, stream: bytes) -> Node | None:
        route = self._asking.get(stream)
        if route is None:
            return None
        if route[1] < time.monotonic():
            del self._asking[stream]
            return None
        return route[0]

    def nodes(self) -> list[NodeStatus]:
        counts = self.slots.slot_counts() if self.slots else {}
        known = set(counts) | set(self.links)
        return [
            NodeStatus(
                node.address,
                node in self.links and not self.links[node].closed,
                counts.get(node, 0),
                self.written_by_node[node],
                self.failed_by_node[node],
            )
            for node in sorted(known, key=lambda n: (n.host, n.port))
        ]

    # -- send ------------------------------------------------------------------------------

    def send(self, records: list[Record]) -> SentBatch:
        assert self.slots is not None, "send() needs connect() first"
        idmp = self.server is not None and self.server.supports_idmp
        shares: _Shares = {}
        entries: list[list[int]] = []
        position = 0
        for record in records:
            indexes = record.pending_entries()
            entries.append(indexes)
            if record.pending is None and not idmp:
                position = self._route_runs(record, position, shares)
                continue
            for index in indexes:
                self._route_entry(record, index, position, idmp, shares)
                position += 1
        return SentBatch(
            records, entries, position, self._send_shares(shares, position),
            asyncio.get_running_loop().time(),
        )  # fmt: skip

    def _route_runs(self, record: Record, position: int, shares: _Shares) -> int:
        """A whole record, one slice of its commands per run of entries on one stream (a
        partitioned record comes grouped by partition); entries an ASK moved go one by one."""
        assert self.slots is not None
        runs = record.stream_runs()
        if len(runs) == 1 and runs[0][0] not in self._asking:
            share = shares.setdefault(self.slots.node_for(runs[0][0]), _Share())
            share.add(record.commands, position, runs[0][1])
            return position + runs[0][1]
        commands = memoryview(record.commands)
        ends = record.ends
        entry = 0
        for stream, count in runs:
            if stream in self._asking:
                for index in range(entry, entry + count):
                    self._route_entry(record, index, position, False, shares)
                    position += 1
            else:
                share = shares.setdefault(self.slots.node_for(stream), _Share())
                share.add(commands[ends[entry - 1] if entry else 0 : ends[entry + count - 1]],
                          position, count)  # fmt: skip
                position += count
            entry += count
        return position

    def _route_entry(
        self, record: Record, index: int, position: int, idmp: bool, shares: _Shares
    ) -> None:
        command = record.command(index)
        stream = record.stream or stream_of(command)
        if idmp:
            command = with_idmp(command, self.producer, record.message_ids[index].encode())
        asked = self._asked(stream)
        assert self.slots is not None
        share = shares.setdefault(asked or self.slots.node_for(stream), _Share())
        if asked is not None:
            share.add_unanswered(_ASKING)
        share.add(command, position, 1)

    def _send_shares(self, shares: _Shares, count: int) -> ReplyFuture:
        loop = asyncio.get_running_loop()
        merged: list[Any] = [None] * count
        result: ReplyFuture = loop.create_future()
        failures: list[str] = []
        waiting = len(shares)
        if not waiting:
            result.set_result(merged)
            return result

        def share_done(node: Node | None, share: _Share, future: ReplyFuture) -> None:
            nonlocal waiting
            share.place(self._share_replies(node, share, future, failures), merged)
            waiting -= 1
            if waiting == 0 and not result.done():
                if failures:
                    result.set_exception(ConnectionLostError(failures[0], merged))
                    result.exception()  # the sender may have given up waiting
                else:
                    result.set_result(merged)

        for node, share in shares.items():
            future = self._send_share(node, share)
            future.add_done_callback(functools.partial(share_done, node, share))
        return result

    def _send_share(self, node: Node | None, share: _Share) -> ReplyFuture:
        future: ReplyFuture = asyncio.get_running_loop().create_future()
        if node is None:  # unassigned slot: the cluster cannot take it until one serves it
            self._stale = True
            future.set_result([ReplyError(_NO_OWNER) for _ in range(share.replies)])
            return future
        link = self.links.get(node)
        if link is None or link.closed:
            self._stale = True
            future.set_exception(ConnectionLostError(f"{node.address} not connected", []))
            future.exception()
            return future
        self.written_by_node[node] += share.entries
        return self.pipelined(link, b"".join(share.parts), share.replies)

    def _share_replies(
        self, node: Node | None, share: _Share, future: ReplyFuture, failures: list[str]
    ) -> list[Any]:
        error = future.exception()
        if error is None:
            return future.result()
        where = node.address if node else "no node"
        failures.append(f"{where}: {error}")
        if node is not None:
            self.failed_by_node[node] += 1
        return error.replies if isinstance(error, ConnectionLostError) else []

    # -- replies ---------------------------------------------------------------------------

    def settle(
        self, batch: SentBatch, replies: list[Any] | None, failure: str = ""
    ) -> BatchOutcome:
        self._follow_redirects(batch, replies or [])
        if failure:
            self._stale = True  # a master failed: ask for the map again before the next send
        return super().settle(batch, replies, failure)

    def _follow_redirects(self, batch: SentBatch, replies: list[Any]) -> None:
        if ReplyError not in set(map(type, replies)):  # in C: the usual batch has no error
            return
        position = 0
        for record, indexes in zip(batch.records, batch.entries, strict=True):
            for index in indexes:
                reply = replies[position] if position < len(replies) else None
                position += 1
                if isinstance(reply, ReplyError):
                    self._redirected(record, index, str(reply))

    def _redirected(self, record: Record, index: int, message: str) -> None:
        redirect = parse_redirect(message)
        if redirect is None:
            if message.startswith(("CLUSTERDOWN", "TRYAGAIN")):
                self._stale = True
            return
        if redirect.kind == "MOVED":
            self._stale = True
            return
        stream = record.stream or stream_of(record.command(index))
        until = time.monotonic() + ASK_ROUTE_SECONDS
        self._asking[stream] = (redirect.node, until)
        if redirect.node not in self.links:
            self._stale = True  # connect() opens the link; the route is kept
