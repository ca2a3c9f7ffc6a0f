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
from agent.messages.redis.resp import ConnectionLostError, ReplyError, RespConnection, bulk

Verdict = Literal["retry", "dead", "attempts"]
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


def with_idmp(command: bytes, stream: bytes, producer: bytes, message_id: bytes) -> bytes:
    """`XADD key ...` → `XADD key IDMP <producer> <message-id> ...` (IDMP comes right after the
    key, before MAXLEN and the id)."""
    count_end = command.index(b"\r\n")
    count = int(command[1:count_end])
    head_end = count_end + 2 + len(_XADD) + len(bulk(stream))
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


@dataclass(slots=True)
class SentBatch:
    records: list[Record]
    entries: list[list[int]]  # per record, the entry indexes sent, in order
    count: int
    replies: asyncio.Future[list[Any]]
    sent_at: float


class StreamWriter:
    def __init__(self, target: RedisTarget, producer_id: str, max_attempts: int) -> None:
        self.target = target
        self.producer = producer_id.encode()
        self.max_attempts = max_attempts
        self.connection: RespConnection | None = None
        self.server: ServerInfo | None = None

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
        replies = self.connection.send(wire, count)
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
                    command = with_idmp(command, record.stream, self.producer, message_id)
                parts.append(command)
        return b"".join(parts), entries

    def settle(
        self, batch: SentBatch, replies: list[Any] | None, failure: str = ""
    ) -> BatchOutcome:
        """Apply the replies (None or a short list when the connection failed; `failure`
        says why) to the records' delivery state."""
        outcome = BatchOutcome()
        got = replies if replies is not None else []
        if len(got) < batch.count:
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


def failure_text(error: BaseException) -> str:
    if isinstance(error, ConnectionLostError):
        return f"connection lost: {error}"
    if isinstance(error, TimeoutError):
        return "no reply within redis.command_timeout"
    return f"{type(error).__name__}: {error}"
