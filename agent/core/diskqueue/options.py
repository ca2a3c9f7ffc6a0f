"""The disk queue's tuning knobs, their defaults and their validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

WhenFull = Literal["block", "reject"]
_MAX_SEGMENT_BYTES = 64 << 20


class QueueOptionArgs(TypedDict, total=False):
    """The keyword arguments of ``DiskQueue(...)``; see :class:`QueueOptions`."""

    max_bytes: int
    segment_bytes: int | None
    when_full: WhenFull
    full_timeout: float
    read_chunk_bytes: int
    ready_cache_bytes: int
    max_unwritten_bytes: int
    frontier_persist_interval: float
    frontier_persist_records: int
    lossy_write_delay: float
    lossy_sync_interval: float
    unrecoverable_after: float


@dataclass(frozen=True, slots=True)
class QueueOptions:
    max_bytes: int = 1 << 30
    segment_bytes: int | None = None  # default: min(64 MiB, max_bytes / 8)
    when_full: WhenFull = "block"
    full_timeout: float = 5.0
    read_chunk_bytes: int = 1 << 20
    ready_cache_bytes: int = 4 << 20
    max_unwritten_bytes: int = 16 << 20
    frontier_persist_interval: float = 0.1
    frontier_persist_records: int = 4096
    lossy_write_delay: float = 0.01
    lossy_sync_interval: float = 0.1
    # How long writes may keep failing before the queue says a restart is the remedy.
    unrecoverable_after: float = 60.0

    @property
    def segment_size(self) -> int:
        return self.segment_bytes or min(_MAX_SEGMENT_BYTES, self.max_bytes // 8)

    def validate(self) -> QueueOptions:
        if self.when_full not in ("block", "reject"):
            raise ValueError(f"when_full must be 'block' or 'reject', not {self.when_full!r}")
        segment = self.segment_size
        if segment < 4096 or segment * 2 > self.max_bytes:
            raise ValueError(
                f"segment_bytes ({segment}) must be at least 4096 and at most half "
                f"of max_bytes ({self.max_bytes})"
            )
        if self.read_chunk_bytes < 4096 or self.frontier_persist_records < 1:
            raise ValueError("read_chunk_bytes must be >= 4096, frontier_persist_records >= 1")
        if self.lossy_write_delay < 0 or self.lossy_sync_interval < 0:
            raise ValueError("lossy_write_delay and lossy_sync_interval must be >= 0")
        return self
