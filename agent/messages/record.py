"""One disk-queue record per accepted request: its XADDs, ready to send, and what they are.

On disk a record is msgpack `[version, topic, stream, layout, ids, ends, commands, token,
tracked, timestamp]`: the writer needs, per entry, the message id (IDMP, dead letters, the
dedupe cache) and the encoded command (a slice of `commands` ending at `ends[i]`). Delivery
state (which entries are done, attempts so far) lives only in memory: after a restart a record
is sent again whole: the bounded duplicate window of docs/delivery-guarantees.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from agent.messages.redis.slots import stream_of

VERSION = 1


class BadRecordError(ValueError):
    """Bytes from the queue that are not a record this version can read."""


@dataclass(slots=True)
class Record:
    topic: str
    stream: bytes  # b"": the entries name different streams (partitions of the topic)
    layout: str
    message_ids: list[str]
    ends: list[int]
    commands: bytes
    confirm_token: int = 0  # nonzero: a request waits for the XADD replies (?ack=redis)
    tracked: bool = False  # client-chosen ids: the dedupe cache wants the entry ids
    timestamp: str = ""  # RFC3339Nano accept time, for dead letters rebuilt from fields
    seq: int = -1
    enqueued_ns: int = 0
    # Delivery state, in memory only.
    pending: list[int] | None = None  # entries still to write; None: all of them
    entry_ids: list[bytes | None] | None = None
    failures: dict[int, str] = field(default_factory=dict)  # entry → why it was dead-lettered
    attempts: dict[int, int] = field(default_factory=dict)
    uncertain: set[int] | None = None  # entries that may be in Redis already (see replay.py)
    # A partitioned topic's entries come grouped by stream: (stream, entry count) of each
    # group, known at accept (in memory only; see stream_runs).
    runs: list[tuple[bytes, int]] | None = None

    def __len__(self) -> int:
        return len(self.ends)

    def command(self, index: int) -> bytes:
        start = self.ends[index - 1] if index else 0
        return self.commands[start : self.ends[index]]

    def entry_stream(self, index: int) -> bytes:
        """The stream of one entry: the record's, or (a partitioned topic's record, whose
        `stream` is empty) the key its command names."""
        return self.stream or stream_of(self.command(index))

    def stream_runs(self) -> list[tuple[bytes, int]]:
        """(stream, entry count) of each run of consecutive entries on one stream. Known from
        accept; worked out once from the commands for a record read back from disk."""
        if self.runs is None:
            if self.stream:
                self.runs = [(self.stream, len(self.ends))]
            else:
                runs: list[tuple[bytes, int]] = []
                for index in range(len(self.ends)):
                    stream = stream_of(self.command(index))
                    if runs and runs[-1][0] == stream:
                        runs[-1] = (stream, runs[-1][1] + 1)
                    else:
                        runs.append((stream, 1))
                self.runs = runs
        return self.runs

    def pending_entries(self) -> list[int]:
        return list(range(len(self.ends))) if self.pending is None else self.pending

    @property
    def finished(self) -> bool:
        return self.pending is not None and not self.pending

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            (
                VERSION,
                self.topic,
                self.stream,
                self.layout,
                self.message_ids,
                self.ends,
                self.commands,
                self.confirm_token,
                self.tracked,
                self.timestamp,
            )
        )
        return packed

    @classmethod
    def decode(cls, data: bytes, seq: int = -1, enqueued_ns: int = 0) -> Record:
        try:
            fields: Any = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException) as error:
            raise BadRecordError(f"not msgpack: {error}") from None
        if not isinstance(fields, list) or not fields or fields[0] != VERSION:
            raise BadRecordError(f"unknown record version: {str(fields)[:40]}")
        if len(fields) != 10:
            raise BadRecordError(f"record has {len(fields)} fields, expected 10")
        _, topic, stream, layout, ids, ends, commands, token, tracked, timestamp = fields
        if len(ids) != len(ends) or (ends and ends[-1] != len(commands)):
            raise BadRecordError("record entries do not match its commands")
        return cls(
            topic, stream, layout, ids, ends, commands, token, tracked, timestamp, seq, enqueued_ns
        )
