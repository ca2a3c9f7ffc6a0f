"""What a disk queue reports about itself (for /status, /metrics and /readyz)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.core.diskqueue.directory import SegmentTable
from agent.core.diskqueue.errors import DiskQueueError
from agent.core.diskqueue.frontier import AckFrontier
from agent.core.diskqueue.reader import QueueReader
from agent.core.diskqueue.writer import QueueWriter


@dataclass(frozen=True, slots=True)
class DiskQueueStats:
    depth_items: int  # records not yet acked
    depth_bytes: int  # headers and frames counted against max_bytes (with the slack; never
    # the space reserved ahead in the active segment)
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
    reservations_refused: int = 0  # space the file system would not reserve ahead (no error)
    failing_seconds: float = 0.0  # since the first failed write with no success after it
    failed: str | None = None  # why puts are refused, if they are
    unrecoverable: bool = False  # failing for longer than the queue waits: restart it


@dataclass(frozen=True, slots=True)
class QueueFacts:
    """What the queue itself (not its writer or reader) knows for its stats."""

    max_bytes: int
    acks: int
    tail_truncations: int
    tail_bytes_cut: int
    broken: DiskQueueError | None
    unrecoverable_after: float


def depth_items(table: SegmentTable, frontier: AckFrontier) -> int:
    """Records not yet acked."""
    return table.next_seq - frontier.frontier - frontier.acked_ahead - frontier.gap_seqs_ahead


def oldest_enqueued_ns(
    table: SegmentTable, frontier: AckFrontier, reader: QueueReader | None
) -> int | None:
    if depth_items(table, frontier) <= 0:
        return None
    seq = frontier.frontier
    item = reader.item_in_memory(seq) if reader is not None else None
    if item is not None:
        return item.enqueued_ns
    # Not in memory: the first record of its segment is as old or older.
    segment = table.containing(seq)
    return segment.first_enqueued_ns if segment is not None and segment.header_ok else None


def collect_stats(
    table: SegmentTable,
    frontier: AckFrontier,
    writer: QueueWriter | None,
    reader: QueueReader | None,
    facts: QueueFacts,
) -> DiskQueueStats:
    failure = facts.broken or (writer.failure if writer is not None else None)
    failing_since = writer.failing_since if writer is not None else None
    failing_for = 0.0 if failing_since is None else time.monotonic() - failing_since
    return DiskQueueStats(
        depth_items=depth_items(table, frontier),
        depth_bytes=table.disk_bytes,
        max_bytes=facts.max_bytes,
        oldest_enqueued_ns=oldest_enqueued_ns(table, frontier, reader),
        in_flight=reader.in_flight if reader is not None else 0,
        segments=len(table.segments),
        appends=writer.appends if writer is not None else 0,
        acks=facts.acks,
        fsyncs=writer.commits if writer is not None else 0,
        corrupt_tail_truncations=facts.tail_truncations,
        corrupt_tail_bytes=facts.tail_bytes_cut,
        corrupt_skips=reader.corrupt_skips if reader is not None else 0,
        corrupt_skipped_bytes=reader.corrupt_skipped_bytes if reader is not None else 0,
        corrupt_records=reader.corrupt_records if reader is not None else 0,
        io_errors=writer.io_errors if writer is not None else 0,
        recoveries=writer.recoveries if writer is not None else 0,
        records_given_up=writer.records_given_up if writer is not None else 0,
        read_errors=reader.read_errors if reader is not None else 0,
        reservations_refused=writer.reservations_refused if writer is not None else 0,
        failing_seconds=round(failing_for, 3),
        failed=str(failure) if failure is not None else None,
        unrecoverable=facts.broken is not None or failing_for > facts.unrecoverable_after,
    )
