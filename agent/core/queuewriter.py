"""The disk queue's write side: appends are placed in the event loop, written in group commits.

``append`` decides at once where a record lands (seq, segment, offset), so order and segment
rolls are settled without I/O. The bytes wait in memory until the next ``commit``, which writes
everything pending in one worker-thread call and makes it durable with one data sync. Callers
that want durability await ``wait_for_commit``; whoever arrives while a commit runs shares the
next one. That sharing is the whole point: one fsync for many appends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.core.queuedir import SegmentInfo, SegmentTable
from agent.core.queueerrors import DiskQueueError, RecordTooLargeError
from agent.core.segment import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    PendingWrite,
    SegmentWriter,
    encode_frame_head,
    encode_header,
    segment_name,
)

log = logging.getLogger(__name__)


class QueueWriter:
    def __init__(
        self,
        directory: Path,
        table: SegmentTable,
        io: ThreadPoolExecutor,
        segment_bytes: int,
        max_bytes: int,
    ) -> None:
        self._directory = directory
        self._table = table
        self._io = io
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._file = SegmentWriter()
        self._pending: list[tuple[SegmentInfo, PendingWrite]] = []
        self._waiter: asyncio.Future[None] | None = None
        self.pending_bytes = 0
        self.durable_next_seq = table.next_seq  # every seq below this is synced
        self.failure: DiskQueueError | None = None
        self.appends = 0
        self.commits = 0

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def space_needed(self, records: Sequence[bytes]) -> int:
        """Disk bytes ``records`` would take, including headers of segments they would open.

        Raises RecordTooLargeError for a record bigger than a segment, or a batch bigger than
        the queue can hold once everything else is acked (all but the active segment deleted).
        """
        active = self._table.active
        size = active.size if active is not None else None
        needed = 0
        for record in records:
            frame = FRAME_OVERHEAD + len(record)
            if frame + HEADER_SIZE > self._segment_bytes:
                raise RecordTooLargeError(
                    f"record of {len(record)} bytes does not fit a segment "
                    f"({self._segment_bytes} bytes)"
                )
            if size is None or self._must_roll(size, frame):
                needed += HEADER_SIZE
                size = HEADER_SIZE
            size += frame
            needed += frame
        if needed > self._max_bytes - self._segment_bytes:
            raise RecordTooLargeError(f"batch of {needed} bytes can never fit the queue")
        return needed

    def _must_roll(self, segment_size: int, frame_bytes: int) -> bool:
        return segment_size + frame_bytes > self._segment_bytes and segment_size > HEADER_SIZE

    def append(self, record: bytes, enqueued_ns: int) -> int:
        """Place ``record`` at the end of the log (in memory until the next commit); its seq."""
        table = self._table
        seq = table.next_seq
        frame_bytes = FRAME_OVERHEAD + len(record)
        segment = table.active
        if segment is None or self._must_roll(segment.size, frame_bytes):
            segment = self._roll(seq, enqueued_ns)
        pending = self._pending
        if pending and pending[-1][0] is segment:
            chunk = pending[-1][1]
        else:
            chunk = PendingWrite(segment.path, None, [])
            pending.append((segment, chunk))
        chunk.parts.append(encode_frame_head(record, enqueued_ns))
        chunk.parts.append(record)
        segment.size += frame_bytes
        table.disk_bytes += frame_bytes
        table.next_seq = seq + 1
        self.pending_bytes += frame_bytes
        self.appends += 1
        return seq

    def _roll(self, first_seq: int, enqueued_ns: int) -> SegmentInfo:
        path = self._directory / segment_name(first_seq)
        segment = SegmentInfo(first_seq, path, HEADER_SIZE, 0, enqueued_ns)
        self._table.segments.append(segment)
        header = encode_header(first_seq, enqueued_ns)
        self._pending.append((segment, PendingWrite(path, header, [])))
        self._table.disk_bytes += HEADER_SIZE
        self.pending_bytes += HEADER_SIZE
        return segment

    async def wait_for_commit(self) -> None:
        """Return once everything appended so far is synced; raises if the write failed."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        # Shielded: one caller giving up must not cancel the commit the others wait for.
        await asyncio.shield(self._waiter)

    async def commit(self) -> bool:
        """Write and sync everything pending; False (and ``failure`` set) if that failed.

        After a failed write or sync nothing more is written: the page cache can no longer be
        trusted to match the file, so the queue must be reopened (which cuts any torn tail).
        """
        pending, waiter = self._pending, self._waiter
        self._pending, self._waiter, self.pending_bytes = [], None, 0
        written_ends = [(segment, segment.size) for segment, _chunk in pending]
        next_seq = self._table.next_seq
        chunks = [chunk for _segment, chunk in pending]
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self._file.write, chunks)
        except asyncio.CancelledError:
            settle(waiter, DiskQueueError("disk queue aborted during a write"))
            raise
        except Exception as error:
            self._fail(error, waiter)
            return False
        self.commits += 1
        for segment, end in written_ends:
            segment.written = end
        self.durable_next_seq = next_seq
        settle(waiter, None)
        return True

    def _fail(self, error: Exception, waiter: asyncio.Future[None] | None) -> None:
        log.error("disk queue %s: write failed, refusing further puts: %s", self._directory, error)
        self.failure = DiskQueueError(f"disk queue write failed: {error}")
        self.failure.__cause__ = error
        settle(waiter, self.failure)
        # Appends that queued up behind the failed write cannot be trusted to land either.
        self._pending, self.pending_bytes = [], 0
        self.fail_waiters(self.failure)

    def fail_waiters(self, error: DiskQueueError) -> None:
        """Release callers waiting for a commit that will not happen."""
        settle(self._waiter, error)
        self._waiter = None

    def close_file(self) -> None:
        """Sync and close the active segment; call from the I/O thread."""
        self._file.close()

    def abandon_file(self) -> None:
        """Close the active segment without syncing, as a crash would; from the I/O thread."""
        self._file.abandon()


def settle(waiter: asyncio.Future[None] | None, error: BaseException | None) -> None:
    """Complete ``waiter`` (if any and not done) with success or ``error``."""
    if waiter is None or waiter.done():
        return
    if error is None:
        waiter.set_result(None)
        return
    waiter.set_exception(error)
    # Callers that gave up (cancelled) never read it; that is fine, do not log it as lost.
    waiter.exception()
