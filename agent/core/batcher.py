"""Accumulates items into batches by count, bytes and linger. No I/O, no clocks of its own.

The caller passes `now` (monotonic seconds) so the policy is testable without sleeping. A batch
is ready when it reaches `max_items` or `max_bytes`, or when its oldest item has waited `linger`.
An item larger than `max_bytes` on its own still forms a batch of one (the sender decides what to
do with it); it is never dropped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Batch(Generic[T]):
    items: list[T] = field(default_factory=list)
    size: int = 0
    opened_at: float = 0.0

    def __len__(self) -> int:
        return len(self.items)


class Accumulator(Generic[T]):
    def __init__(self, max_items: int, max_bytes: int, linger: float) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("max_items and max_bytes must be at least 1")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.linger = linger
        self._open: Batch[T] = Batch()
        self._ready: list[Batch[T]] = []

    def add(self, item: T, size: int, now: float) -> None:
        """Add one item; closes the open batch first if the item would overflow it."""
        current = self._open
        if current.items and current.size + size > self.max_bytes:
            self._close()
            current = self._open
        if not current.items:
            current.opened_at = now
        current.items.append(item)
        current.size += size
        if len(current.items) >= self.max_items or current.size >= self.max_bytes:
            self._close()

    def _close(self) -> None:
        if self._open.items:
            self._ready.append(self._open)
        self._open = Batch()

    def take_ready(self, now: float, *, force: bool = False) -> list[Batch[T]]:
        """Batches that are full or have lingered long enough (all of them when `force`)."""
        if self._open.items and (force or now - self._open.opened_at >= self.linger):
            self._close()
        ready, self._ready = self._ready, []
        return ready

    def next_deadline(self) -> float | None:
        """When the open batch's linger runs out (None when nothing is waiting)."""
        if self._ready:
            return 0.0
        if self._open.items:
            return self._open.opened_at + self.linger
        return None

    @property
    def pending_items(self) -> int:
        return len(self._open.items) + sum(len(batch.items) for batch in self._ready)

    @property
    def pending_bytes(self) -> int:
        return self._open.size + sum(batch.size for batch in self._ready)
