"""Writing batches of records to Redis: wire bytes out, per-entry verdicts back.

`StreamWriter` owns the one connection (opened through `RedisTarget`), turns records into one
pipelined write (plain XADD, or XADD IDMP on Redis >= 8.6) and reads the replies back into a
`BatchOutcome`: which entries are written, which wait for a retry and which are dead. Error
replies are classified in one place, `classify`:

  retry      LOADING BUSY READONLY MASTERDOWN CLUSTERDOWN TRYAGAIN MOVED ASK NOAUTH
             NOREPLICAS, a lost connection or a timeout: the server will take it later.
  dead       WRONGTYPE, ERR (syntax, bad MAXLEN, bad arguments): never accepted as sent.
  attempts   OOM, NOPERM, anything unknown: retried, dead after `max_attempts`.

No MULTI: entries are independent, and one failing must neither fail nor duplicate the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.messages.record import Record
from agent.messages.redis.connection import RedisTarget, ServerInfo
from agent.messages.redis.resp import (
    ConnectionLostError,
    ReplyError,
    RespConnection,
    bulk,
    encode_command,
)
from agent.messages.redis.slots import stream_of

Verdict = Literal["retry", "dead", "attempts"]
ReplyFuture = asyncio.Future[list[Any]]
RETRYABLE_CODES = frozenset(
    {
        "LOADING",
        "BUSY",
        "READONLY",
        "MASTERDOWN",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "MOVED",
        "ASK",
        "NOAUTH",
        "NOREPLICAS",
    }
)
_ERR_NOT_ABOUT_THE_ENTRY = ("ERR unknown command", "ERR max number of clients")
_XADD = bulk(b"XADD")
_IDMP = bulk(b"IDMP")


def error_code(message: str) -> str:
    """The leading upper-case word of an error reply (`WRONGTYPE`, `OOM`...), else `ERR`."""
    word = message.split(" ", 1)[0]
    return word if word.isalpha() and word.isupper() and len(word) <= 32 else "ERR"


def classify(message: str) -> Verdict:
    code = error_code(message)
    if code in RETRYABLE_CODES:
        return "retry"
    if code == "WRONGTYPE":
        return "dead"
    if code == "ERR" and not message.startswith(_ERR_NOT_ABOUT_THE_ENTRY):
        return "dead"
    return "attempts"


def with_idmp(command: bytes, producer: bytes, message_id: bytes) -> bytes:
    """`XADD key ...` → `XADD key IDMP <producer> <message-id> ...` (IDMP comes right after the
    key, before MAXLEN and the id). The key is read from the command: a partitioned record's
    entries name different streams."""
    count_end = command.index(b"\r\n")
    count = int(command[1:count_end])
    head_end = count_end + 2 + len(_XADD) + len(bulk(stream_of(command)))
    return (
        b"*%d\r\n" % (count + 3)
        + command[count_end + 2 : head_end]
        + _IDMP
        + bulk(producer)
        + bulk(message_id)
        + command[head_end:]
    )


@dataclass(slots=True)
class DeadEntry:
    record: Record
    index: int
    reason: str  # the error code, a metric label
    detail: str


@dataclass(slots=True)
class BatchOutcome:
    written: int = 0
    finished: list[Record] = field(default_factory=list)  # every entry written or dead
    unfinished: list[Record] = field(default_factory=list)  # to send again, in this order
    dead: list[DeadEntry] = field(default_factory=list)
    retry_reason: str = ""  # why `unfinished` is not empty
    connection_failed: bool = False

    @property
    def clean(self) -> bool:
        return not self.unfinished and not self.dead


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One server the writer writes to, for /readyz, /status and per-node metrics."""

    address: str
    connected: bool
    slots: int  # cluster hash slots it serves (0 outside a cluster)
    sent: int  # entries sent to it since start
    failed: int  # batches (or a cluster batch's share) it failed since start


@dataclass(slots=True)
class SentBatch:
    records: list[Record]
    entries: list[list[int]]  # per record, the entry indexes sent, in order
    count: int
    replies: asyncio.Future[list[Any]]
    sent_at: float


class StreamWriter:
    def __init__(
        self,
        target: RedisTarget,
        producer_id: str,
        max_attempts: int,
        *,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self.target = target
        self.producer = producer_id.encode()
        self.max_attempts = max_attempts
        self.wait_replicas = wait_replicas
        self._wait = encode_command(
            (b"WAIT", b"%d" % wait_replicas, b"%d" % int(wait_timeout * 1000))
        )
        self.connection: RespConnection | None = None
        self.server: ServerInfo | None = None
        self.sent_entries = 0
        self.failed_batches = 0

    def nodes(self) -> list[NodeStatus]:
        url = self.target.url
        address = f"unix:{url.path}" if url.path else f"{url.host}:{url.port}"
        return [NodeStatus(address, self.connected, 0, self.sent_entries, self.failed_batches)]

    def connection_for(self, key: bytes) -> RespConnection | None:
        """The connection that serves `key` (one server here; a cluster picks the node)."""
        return self.connection

    def pipelined(self, connection: RespConnection, wire: bytes, count: int) -> ReplyFuture:
        """Send `count` commands; with `wait_replicas`, a WAIT follows them and the replies
        count only once that many replicas have them (else they fail as unconfirmed, to be
        looked up and resent: replay.py)."""
        if not self.wait_replicas or count == 0:
            return connection.send(wire, count)
        replies = connection.send(wire + self._wait, count + 1)
        return _confirmed_by_replicas(replies, self.wait_replicas)

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.closed

    async def connect(self) -> ServerInfo:
        self.disconnect()
        self.connection, self.server = await self.target.connect()
        return self.server

    def disconnect(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def send(self, records: list[Record]) -> SentBatch:
        """Write every pending entry of `records` as one pipelined batch."""
        assert self.connection is not None, "send() needs connect() first"
        idmp = self.server is not None and self.server.supports_idmp
        if not idmp and all(record.pending is None for record in records):
            wire = b"".join(record.commands for record in records)
            entries = [list(range(len(record))) for record in records]
        else:
            wire, entries = self._selected(records, idmp)
        count = sum(len(indexes) for indexes in entries)
        self.sent_entries += count
        replies = self.pipelined(self.connection, wire, count)
        return SentBatch(records, entries, count, replies, asyncio.get_running_loop().time())

    def _selected(self, records: list[Record], idmp: bool) -> tuple[bytes, list[list[int]]]:
        parts: list[bytes] = []
        entries: list[list[int]] = []
        for record in records:
            indexes = record.pending_entries()
            entries.append(indexes)
            for index in indexes:
                command = record.command(index)
                if idmp:
                    message_id = record.message_ids[index].encode()
                    command = with_idmp(command, self.producer, message_id)
                parts.append(command)
        return b"".join(parts), entries

    def settle(
        self, batch: SentBatch, replies: list[Any] | None, failure: str = ""
    ) -> BatchOutcome:
        """Apply the replies (None or a short list when the connection failed; `failure`
        says why) to the records' delivery state."""
        outcome = BatchOutcome()
        got = replies if replies is not None else []
        # A cluster batch that failed on one node has a reply slot for every entry (None where
        # that node never answered): `failure` says it failed even though the length is full.
        if len(got) < batch.count or failure:
            self.failed_batches += 1
            outcome.connection_failed = True
            outcome.retry_reason = failure or "connection lost"
        # One check for the whole batch (set(map(type, ...)) runs in C): when every reply is
        # an entry id, records nobody waits on are done without looking at their replies.
        clean = not outcome.connection_failed and ReplyError not in set(map(type, got))
        position = 0
        for record, indexes in zip(batch.records, batch.entries, strict=True):
            if clean and record.pending is None and not record.confirm_token and not record.tracked:
                record.pending = []  # the hot path: all written, nobody wants the ids
                outcome.written += len(indexes)
                outcome.finished.append(record)
            else:
                record_replies = got[position : position + len(indexes)]
                self._settle_record(record, indexes, record_replies, outcome)
            position += len(indexes)
        return outcome

    def _settle_record(
        self, record: Record, indexes: list[int], replies: list[Any], outcome: BatchOutcome
    ) -> None:
        if record.entry_ids is None:
            record.entry_ids = [None] * len(record)
        still: list[int] = []
        for position, index in enumerate(indexes):
            reply = replies[position] if position < len(replies) else None
            if reply is None:  # sent, never answered: it may have been written
                still.append(index)
                if record.uncertain is None:
                    record.uncertain = set()
                record.uncertain.add(index)
            elif isinstance(reply, ReplyError):
                self._entry_failed(record, index, str(reply), still, outcome)
            else:
                record.entry_ids[index] = bytes(reply)
                outcome.written += 1
        record.pending = still
        (outcome.unfinished if still else outcome.finished).append(record)

    def _entry_failed(
        self, record: Record, index: int, message: str, still: list[int], outcome: BatchOutcome
    ) -> None:
        verdict = classify(message)
        if verdict == "attempts":
            record.attempts[index] = record.attempts.get(index, 0) + 1
            if record.attempts[index] >= self.max_attempts:
                verdict = "dead"
        if verdict == "dead":
            code = error_code(message)
            record.failures[index] = message
            outcome.dead.append(DeadEntry(record, index, code, message))
            return
        still.append(index)
        if not outcome.retry_reason:
            outcome.retry_reason = message


def _confirmed_by_replicas(replies: ReplyFuture, wanted: int) -> ReplyFuture:
    result: ReplyFuture = asyncio.get_running_loop().create_future()

    def done(future: ReplyFuture) -> None:
        if result.done():
            return
        error = future.exception()
        if error is not None:
            # Replies without their WAIT confirm nothing: every entry is of unknown fate.
            reason = str(error) if isinstance(error, ConnectionLostError) else repr(error)
            result.set_exception(ConnectionLostError(reason, []))
            result.exception()
            return
        got = future.result()
        acknowledged = got[-1]
        if isinstance(acknowledged, int) and acknowledged >= wanted:
            result.set_result(got[:-1])
            return
        # Written on the master, not yet on enough replicas: not a reply the agent can ack on.
        unconfirmed = ConnectionLostError(
            f"NOREPLICAS WAIT: {acknowledged} of {wanted} replicas confirmed", []
        )
        result.set_exception(unconfirmed)
        result.exception()

    replies.add_done_callback(done)
    return result


def failure_text(error: BaseException) -> str:
    if isinstance(error, ConnectionLostError):
        return f"connection lost: {error}"
    if isinstance(error, TimeoutError):
        return "no reply within redis.command_timeout"
    return f"{type(error).__name__}: {error}"
