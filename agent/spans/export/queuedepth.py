"""How much the span sender's disk queue holds, in records and in spans.

The queue stores opaque records; only the process that put a record there knows how many
spans it holds without unpacking it. So spans are counted for records put by this process,
and records left from before a restart are reported apart, as records only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from agent.core.diskqueue.queue import DiskQueue, Item

UnitsFunction = Callable[[bytes], int]


class QueueDepth(NamedTuple):
    records: int
    units: int
    """Units (spans) in the records this process put in the queue."""
    records_from_before_restart: int
    oldest_age_seconds: float | None

    def status(self) -> dict[str, Any]:
        age = self.oldest_age_seconds
        return {
            "records": self.records,
            "units": self.units,
            "records_from_before_restart": self.records_from_before_restart,
            "oldest_age_seconds": None if age is None else round(age, 3),
        }


NO_QUEUE = QueueDepth(0, 0, 0, None)


class QueueAccount:
    def __init__(self, units_of: UnitsFunction) -> None:
        self._units_of = units_of
        self._own_records = 0
        self._own_units = 0
        # Records from before a restart have seqs below this one.
        self._first_own_seq: int | None = None

    def put(self, seq: int, record: bytes) -> None:
        if self._first_own_seq is None:
            self._first_own_seq = seq
        self._own_records += 1
        self._own_units += self._units_of(record)

    def acked(self, item: Item) -> None:
        if self._first_own_seq is not None and item.seq >= self._first_own_seq:
            self._own_records -= 1
            self._own_units -= self._units_of(item.data)

    def depth(self, queue: DiskQueue | None) -> QueueDepth:
        if queue is None:
            return NO_QUEUE
        stats = queue.stats()
        older = max(0, stats.depth_items - self._own_records)
        oldest = stats.oldest_enqueued_ns
        # Enqueue times are wall-clock stamps that outlive the process: compare with the same.
        age = max(0.0, (time.time_ns() - oldest) / 1e9) if oldest is not None else None
        return QueueDepth(stats.depth_items, self._own_units, older, age)
