"""Entries whose fate is unknown are looked up in their stream before they are sent again.

An XADD whose reply never came (the connection broke, or the agent was killed and the record is
replayed from the disk queue) may or may not be in Redis. Resending it blindly is the classic
at-least-once duplicate. Before such a resend, without IDMP (Redis < 8.6), the sender reads the
newest entries of the stream (`XREVRANGE key + - COUNT n`) and takes every message id it finds
there as written: that entry is marked done with the entry id found, and only the rest is sent.

Only ids actually found count: no entry is assumed written because a later one was (an error
reply in between could have refused it), so the check can leave a duplicate but never lose a
message. It looks at the newest `n` entries, `n` = twice the uncertain entries plus a margin for
other producers, capped. When some are not there, it also reads forward from the time the
oldest of them was queued (stream ids are Redis's clock in ms; a slack covers a Redis clock a
little behind ours): after a crash the previous run may have written far more than one batch
past the records now replayed, which the tail alone does not reach. A stream that other
producers fill faster than the margins can still get a duplicate. The `raw` layout carries no
message id and is resent as before. With `wait_replicas` nothing is looked up: an entry found on
the master may be on no replica yet, so it is resent and the resend's WAIT confirms it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.messages.record import Record

MARGIN = 200
MAX_LOOKBACK = 20_000
FORWARD_MARGIN = 2_000  # entries written between a record's queueing and its own write
CLOCK_SLACK_MS = 100


def lookback(uncertain: int) -> int:
    return min(2 * uncertain + MARGIN, MAX_LOOKBACK)


@dataclass(slots=True)
class StreamLookup:
    """The uncertain entries of one stream in a batch: what to look for, and since when."""

    layout: str
    since_ns: int
    wanted: set[str] = field(default_factory=set)

    def tail_count(self) -> bytes:
        return b"%d" % lookback(len(self.wanted))

    def forward_range(self) -> tuple[bytes, bytes]:
        """(first stream id, COUNT) of the forward read from the oldest record's queueing."""
        start_ms = max(0, self.since_ns // 1_000_000 - CLOCK_SLACK_MS)
        count = min(2 * len(self.wanted) + FORWARD_MARGIN, MAX_LOOKBACK)
        return b"%d" % start_ms, b"%d" % count


def lookups(records: Iterable[Record]) -> dict[bytes, StreamLookup]:
    found: dict[bytes, StreamLookup] = {}
    for record in records:
        for index in record.uncertain or ():
            stream = record.entry_stream(index)
            lookup = found.get(stream)
            if lookup is None:
                lookup = found[stream] = StreamLookup(record.layout, record.enqueued_ns)
            lookup.since_ns = min(lookup.since_ns, record.enqueued_ns)
            lookup.wanted.add(record.message_ids[index])
    return found


def message_id_of(layout: str, fields: list[Any]) -> str | None:
    """The message id stored in one stream entry's field list (flat [name, value, ...])."""
    pairs = dict(zip(fields[::2], fields[1::2], strict=False))
    if layout == "fields":
        value = pairs.get(b"message_id")
        return value.decode(errors="replace") if isinstance(value, bytes) else None
    document = pairs.get(b"data")
    if layout != "jobfirst" or not isinstance(document, bytes):
        return None
    try:
        message = orjson.loads(document)
    except orjson.JSONDecodeError:
        return None
    found = message.get("id") if isinstance(message, dict) else None
    return found if isinstance(found, str) else None


def ids_in_tail(layout: str, reply: Any) -> dict[str, bytes]:
    """XREVRANGE reply → {message id: stream entry id} (other producers' entries included)."""
    found: dict[str, bytes] = {}
    if not isinstance(reply, list):
        return found
    for entry in reply:
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            continue
        message_id = message_id_of(layout, entry[1])
        if message_id is not None:
            found.setdefault(message_id, bytes(entry[0]))
    return found


def mark_found(records: Iterable[Record], found: dict[str, bytes]) -> int:
    """Mark uncertain entries whose ids are in `found` as written; returns how many were."""
    marked = 0
    for record in records:
        if not record.uncertain:
            continue
        if record.entry_ids is None:
            record.entry_ids = [None] * len(record)
        done = {i for i in record.uncertain if record.message_ids[i] in found}
        for index in done:
            record.entry_ids[index] = found[record.message_ids[index]]
        record.pending = [i for i in record.pending_entries() if i not in done]
        record.uncertain = None
        marked += len(done)
    return marked
