"""What a disk queue reports about itself (for /status, /metrics and /readyz)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DiskQueueStats:
    depth_items: int  # records not yet acked
    depth_bytes: int  # segment bytes on disk, counted against max_bytes (includes the slack)
    max_bytes: int
    oldest_enqueued_ns: int | None  # enqueue time of the oldest unacked record
    in_flight: int  # handed out, not yet acked or requeued
    segments: int
    appends: int
    acks: int
    fsyncs: int  # group commits (one data sync each)
    corrupt_tail_truncations: int
    corrupt_tail_bytes: int
    corrupt_skips: int
    corrupt_skipped_bytes: int
    corrupt_records: int = 0  # records lost to damage (cut out on open or skipped on read)
    io_errors: int = 0  # failed writes or syncs
    recoveries: int = 0  # times the queue cut back to its last sync and took puts again
    records_given_up: int = 0  # appended but never synced when a write failed (puts failed)
    read_errors: int = 0  # failed reads, retried
    failing_seconds: float = 0.0  # since the first failed write with no success after it
    failed: str | None = None  # why puts are refused, if they are
    unrecoverable: bool = False  # failing for longer than the queue waits: restart it
