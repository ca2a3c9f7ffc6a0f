"""A durable FIFO of byte records on local disk, with group commit and out-of-order acks.

Both pipelines buffer through this queue: the message proxy writes every accepted publish here,
and the span exporter spills batches here while Jaeger is down. One process owns a directory
(an ``flock`` on ``LOCK``); records live in append-only segment files (see ``segment.py``).

Guarantees
    * ``await put(..., durable=True)`` returns after the record's bytes are fsync'd. Appends that
      arrive while an fsync runs share the next one (group commit), so many concurrent callers
      cost one fsync, not one each. ``durable=False`` returns at once; the record is written and
      synced by the next group commit, and is lost if the process dies before that.
    * ``get`` hands records out in seq order, each once, until it is acked or requeued.
      ``requeue`` hands records out again, before any fresh one. After a restart every record
      not acked is handed out again, in order.
    * Bounded duplicates: the acked frontier (every seq below it is acked) is persisted at most
      every ``frontier_persist_interval`` seconds or every ``frontier_persist_records`` acks,
      whichever comes first, and on close. A crash therefore hands out again the records that
      were in flight plus at most about ``frontier_persist_records`` acked ones (those acked
      within the last interval, plus any acked while the state file was being written).
    * Damage is cut and counted, never fatal: a torn tail of the last segment is truncated on
      open (``corrupt_tail_truncations``); damage inside an older segment makes the reader skip
      to the next segment (``corrupt_skips``), with the lost bytes logged and counted.
    * Byte limit: ``max_bytes`` bounds the segment files on disk (payload + framing + headers).
      Space is freed when a fully acked segment is deleted, so up to one segment of acked bytes
      can still count against the limit (the slack); the default ``segment_bytes`` of
      ``min(64 MiB, max_bytes / 8)`` keeps that slack to an eighth of the limit.
    * After a write or fsync error the queue refuses further puts (``DiskQueueError``): once an
      fsync has failed, the page cache can no longer be trusted. Reopening recovers.

Memory stays bounded whatever the backlog: records are read from disk one chunk at a time
(``read_chunk_bytes``), and recent appends are kept in memory for a caught-up consumer only up
to ``ready_cache_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.core.ackfrontier import AckFrontier
from agent.core.atomicfile import save_state
from agent.core.queuedir import (
    STATE_NAME,
    STATE_VERSION,
    DiskQueueError,
    QueueLockedError,
    Recovered,
    SegmentInfo,
    recover,
)
from agent.core.segment import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    PendingWrite,
    ReadResult,
    SegmentReader,
    SegmentWriter,
    encode_frame_head,
    encode_header,
    segment_name,
)

__all__ = [
    "DiskQueue",
    "DiskQueueError",
    "DiskQueueStats",
    "Item",
    "QueueClosedError",
    "QueueFullError",
    "QueueLockedError",
    "RecordTooLargeError",
]

log = logging.getLogger(__name__)

WhenFull = Literal["block", "reject"]
_MAX_SEGMENT_BYTES = 64 << 20


class QueueFullError(DiskQueueError):
    """The byte limit leaves no room for the records (at once, or within ``full_timeout``)."""

    def __init__(self, depth_items: int, depth_bytes: int, max_bytes: int) -> None:
        super().__init__(
            f"disk queue full: {depth_items} records, {depth_bytes} of {max_bytes} bytes"
        )
        self.depth_items = depth_items
        self.depth_bytes = depth_bytes
        self.max_bytes = max_bytes


class QueueClosedError(DiskQueueError):
    """The queue is not open (never opened, closing or closed)."""


class RecordTooLargeError(DiskQueueError, ValueError):
    """A record (or a ``put_many`` batch) could never fit, whatever the queue holds."""


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    data: bytes
    enqueued_ns: int


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
    fsyncs: int  # group commits (each one data sync)
    corrupt_tail_truncations: int
    corrupt_tail_bytes: int
    corrupt_skips: int
    corrupt_skipped_bytes: int
    failed: str | None  # why puts are refused, if they are


class _Signal:
    """Wakes every current waiter at once; waiters re-check their condition after waking."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def notify(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    async def wait_until(self, deadline: float | None) -> bool:
        """Wait for a notify; False if the loop clock passes ``deadline`` first."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(self._waiter)
        except TimeoutError:
            return False
        return True


class DiskQueue:
    """See the module docstring. Use ``async with DiskQueue(path) as queue`` or open/close."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int | None = None,
        when_full: WhenFull = "block",
        full_timeout: float = 5.0,
        read_chunk_bytes: int = 1 << 20,
        ready_cache_bytes: int = 4 << 20,
        max_unwritten_bytes: int = 16 << 20,
        frontier_persist_interval: float = 0.1,
        frontier_persist_records: int = 4096,
    ) -> None:
        self._directory = Path(directory)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes or min(_MAX_SEGMENT_BYTES, max_bytes // 8)
        self._when_full = when_full
        self._full_timeout = full_timeout
        self._read_chunk_bytes = read_chunk_bytes
        self._ready_cache_bytes = ready_cache_bytes
        self._max_unwritten_bytes = max_unwritten_bytes
        self._persist_interval = frontier_persist_interval
        self._persist_records = frontier_persist_records
        self._validate_options()
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._failure: DiskQueueError | None = None
        self._closed = asyncio.Event()
        # Write side: reserved in the event loop, written and synced by the I/O thread.
        self._segments: list[SegmentInfo] = []
        self._next_seq = 0
        self._durable_next_seq = 0
        self._disk_bytes = 0
        self._pending: list[tuple[SegmentInfo, PendingWrite]] = []
        self._pending_bytes = 0
        self._commit_waiter: asyncio.Future[None] | None = None
        self._writer = SegmentWriter()
        self._io: ThreadPoolExecutor | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()
        self._space = _Signal()
        self._lock_fd = -1
        # Acks and their persistence.
        self._frontier = AckFrontier()
        self._persisted_frontier = 0
        self._acked_since_persist = 0
        self._last_persist = 0.0
        self._persist_armed = False
        # Read side: the cursor is the disk position of the first record not yet in ``_ready``.
        self._reader = SegmentReader()
        self._read_task: asyncio.Future[ReadResult] | None = None
        self._read_lock = asyncio.Lock()
        self._read_segment: SegmentInfo | None = None
        self._read_offset = 0
        self._read_seq = 0
        self._tail_attached = False  # cursor at the write end: appends go straight to _ready
        self._ready: deque[Item] = deque()
        self._ready_bytes = 0
        self._readable = _Signal()
        self._in_flight: dict[int, Item] = {}
        self._requeued: dict[int, Item] = {}
        # Counters.
        self._appends = self._acks = self._fsyncs = 0
        self._tail_truncations = self._tail_bytes_cut = 0
        self._corrupt_skips = self._corrupt_skipped_bytes = 0

    def _validate_options(self) -> None:
        if self._when_full not in ("block", "reject"):
            raise ValueError(f"when_full must be 'block' or 'reject', not {self._when_full!r}")
        if self._segment_bytes < 4096 or self._segment_bytes * 2 > self._max_bytes:
            raise ValueError(
                f"segment_bytes ({self._segment_bytes}) must be at least 4096 and at most half "
                f"of max_bytes ({self._max_bytes})"
            )
        if self._read_chunk_bytes < 4096 or self._persist_records < 1:
            raise ValueError("read_chunk_bytes must be >= 4096, frontier_persist_records >= 1")

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> DiskQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Lock the directory, recover what is on disk and start the group-commit task.

        Raises QueueLockedError if another process (or another open queue) owns the directory.
        """
        if self._state != "new":
            raise DiskQueueError(f"disk queue is {self._state}; open() works once")
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diskqueue-io")
        try:
            recovered = await asyncio.get_running_loop().run_in_executor(
                io, recover, self._directory
            )
        except BaseException:
            io.shutdown(wait=False)
            raise
        self._io = io
        self._adopt(recovered)
        self._state = "open"
        self._commit_task = asyncio.create_task(self._commit_loop(), name="diskqueue-commit")
        self._commit_task.add_done_callback(self._on_commit_task_done)

    def _adopt(self, recovered: Recovered) -> None:
        self._lock_fd = recovered.lock_fd
        self._segments = recovered.segments
        self._next_seq = self._durable_next_seq = recovered.next_seq
        self._frontier = AckFrontier(recovered.frontier)
        self._persisted_frontier = recovered.frontier
        self._last_persist = time.monotonic()
        self._disk_bytes = sum(segment.size for segment in self._segments)
        self._tail_truncations = recovered.tail_truncations
        self._tail_bytes_cut = recovered.tail_bytes_cut
        if not self._segments or recovered.frontier == recovered.next_seq:
            self._tail_attached = True
            self._read_seq = recovered.next_seq
            if self._segments:
                self._read_segment, self._read_offset = self._segments[-1], self._segments[-1].size
            return
        start = self._segment_containing(recovered.frontier) or self._segments[0]
        self._enter_segment(start, start.first_seq)

    async def close(self) -> None:
        """Flush pending appends, persist the frontier and release the directory.

        Idempotent, and safe before open. Unacked records stay on disk for the next open.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        if self._state == "closing":
            await self._closed.wait()
            return
        self._state = "closing"
        self._wake_everyone()
        try:
            if self._commit_task is not None:
                await self._commit_task
            await self._run_io(self._writer.close)
        except Exception:
            log.exception("disk queue %s: error while closing", self._directory)
        finally:
            await self._release()

    async def abort(self) -> None:
        """Stop at once, like a crash: no flush, no frontier persist; releases the directory.

        What was written stays in the page cache as after ``kill -9``. For a forced shutdown.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closing"
        self._wake_everyone()
        if self._commit_task is not None:
            self._commit_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
        self._fail_commit_waiter(QueueClosedError("disk queue aborted"))
        await self._run_io(self._writer.abandon)
        await self._release()

    async def _release(self) -> None:
        async with self._read_lock:
            if self._read_task is not None:
                with contextlib.suppress(Exception):
                    await self._read_task
            self._reader.close()
        if self._io is not None:
            self._io.shutdown(wait=False)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._state = "closed"
        self._closed.set()

    def _wake_everyone(self) -> None:
        self._work.set()
        self._readable.notify()
        self._space.notify()

    # -- producing ---------------------------------------------------------------------------

    async def put(self, record: bytes, *, durable: bool = True) -> int:
        """Append one record; returns its seq. See :meth:`put_many`."""
        seqs = await self.put_many((record,), durable=durable)
        return seqs[0]

    async def put_many(self, records: Sequence[bytes], *, durable: bool = True) -> list[int]:
        """Append records in order; returns their seqs.

        With ``durable`` it returns once the records are fsync'd (sharing the fsync with every
        append that joined the same group commit). When the byte limit leaves no room it raises
        QueueFullError at once (``when_full="reject"``) or after waiting up to ``full_timeout``
        seconds for acks to free a segment (``"block"``). All records go in, or none.
        """
        self._check_writable()
        if not records:
            return []
        if self._disk_bytes + self._space_needed(records) > self._max_bytes:
            await self._wait_for_space(records)
        now = time.time_ns()
        append = self._append
        seqs = [append(record, now) for record in records]
        self._work.set()
        if durable or self._pending_bytes > self._max_unwritten_bytes:
            await self._wait_for_commit()
        return seqs

    def _space_needed(self, records: Sequence[bytes]) -> int:
        """Disk bytes ``records`` would take, including headers of segments they would open."""
        active = self._segments[-1] if self._segments else None
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

    async def _wait_for_space(self, records: Sequence[bytes]) -> None:
        if self._when_full == "reject":
            raise self._full_error()
        deadline = asyncio.get_running_loop().time() + self._full_timeout
        while self._disk_bytes + self._space_needed(records) > self._max_bytes:
            if not await self._space.wait_until(deadline):
                raise self._full_error()
            self._check_writable()

    def _full_error(self) -> QueueFullError:
        return QueueFullError(self._depth_items(), self._disk_bytes, self._max_bytes)

    def _append(self, record: bytes, enqueued_ns: int) -> int:
        seq = self._next_seq
        frame_bytes = FRAME_OVERHEAD + len(record)
        segment = self._segments[-1] if self._segments else None
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
        self._disk_bytes += frame_bytes
        self._pending_bytes += frame_bytes
        self._next_seq = seq + 1
        self._appends += 1
        if self._tail_attached and self._ready_bytes < self._ready_cache_bytes:
            self._ready.append(Item(seq, record, enqueued_ns))
            self._ready_bytes += len(record)
            self._read_segment, self._read_offset, self._read_seq = segment, segment.size, seq + 1
            self._readable.notify()
        else:
            # The consumer is behind: it reads this record from disk when it gets there.
            self._tail_attached = False
        return seq

    def _roll(self, first_seq: int, enqueued_ns: int) -> SegmentInfo:
        path = self._directory / segment_name(first_seq)
        segment = SegmentInfo(first_seq, path, HEADER_SIZE, 0, enqueued_ns)
        self._segments.append(segment)
        header = encode_header(first_seq, enqueued_ns)
        self._pending.append((segment, PendingWrite(path, header, [])))
        self._disk_bytes += HEADER_SIZE
        self._pending_bytes += HEADER_SIZE
        return segment

    async def _wait_for_commit(self) -> None:
        if self._commit_waiter is None:
            self._commit_waiter = asyncio.get_running_loop().create_future()
        # Shielded: one caller giving up must not cancel the commit the others wait for.
        await asyncio.shield(self._commit_waiter)

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._state != "open":
            raise QueueClosedError(f"disk queue {self._directory} is {self._state}")

    # -- group commit ------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._wait_for_work()
            if self._pending:
                await self._commit_pending()
            if self._persist_due():
                await self._persist_frontier()
            if self._state != "open" and not self._pending:
                return

    async def _wait_for_work(self) -> None:
        if self._pending or self._state != "open" or self._persist_due():
            return
        timeout = None
        if self._frontier_dirty():
            timeout = max(0.0, self._last_persist + self._persist_interval - time.monotonic())
        self._work.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)

    async def _commit_pending(self) -> None:
        pending, waiter = self._pending, self._commit_waiter
        self._pending, self._commit_waiter, self._pending_bytes = [], None, 0
        written_ends = [(segment, segment.size) for segment, _chunk in pending]
        next_seq = self._next_seq
        try:
            await self._run_io(self._writer.write, [chunk for _segment, chunk in pending])
        except asyncio.CancelledError:
            _settle(waiter, QueueClosedError("disk queue aborted"))
            raise
        except Exception as error:
            self._fail(error, waiter)
            return
        self._fsyncs += 1
        for segment, end in written_ends:
            segment.written = end
        self._durable_next_seq = next_seq
        _settle(waiter, None)
        self._readable.notify()

    def _fail(self, error: BaseException, waiter: asyncio.Future[None] | None) -> None:
        log.error("disk queue %s: write failed, refusing further puts: %s", self._directory, error)
        self._failure = DiskQueueError(f"disk queue write failed: {error}")
        self._failure.__cause__ = error
        _settle(waiter, self._failure)
        # Appends that queued up behind the failed write cannot be trusted to land either.
        self._pending, self._pending_bytes = [], 0
        self._fail_commit_waiter(self._failure)
        self._space.notify()

    def _fail_commit_waiter(self, error: DiskQueueError) -> None:
        _settle(self._commit_waiter, error)
        self._commit_waiter = None

    def _on_commit_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("disk queue %s: commit task died", self._directory, exc_info=error)
        self._failure = DiskQueueError(f"disk queue commit task died: {error!r}")
        self._fail_commit_waiter(self._failure)
        self._space.notify()

    async def _run_io(self, function: Any, *args: Any) -> Any:
        assert self._io is not None
        return await asyncio.get_running_loop().run_in_executor(self._io, function, *args)

    # -- acks and their persistence ------------------------------------------------------------

    def ack(self, seq: int) -> None:
        """Mark a handed-out record done. Acking twice is a no-op; acks after close are ignored
        (the record is handed out again after the next open, within the duplicates bound)."""
        item = self._in_flight.pop(seq, None) or self._requeued.pop(seq, None)
        if item is None:
            if self._frontier.is_done(seq) or self._state != "open":
                return
            raise ValueError(f"seq {seq} was not handed out by get()")
        self._acks += 1
        self._acked_since_persist += 1
        if self._frontier.ack(seq):
            self._frontier_moved()

    def ack_many(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.ack(seq)

    def requeue(self, seqs: Iterable[int]) -> None:
        """Hand these in-flight records out again, before any fresh record and in seq order."""
        wanted = list(seqs)
        missing = [seq for seq in wanted if seq not in self._in_flight]
        if missing:
            raise ValueError(f"cannot requeue seqs that are not in flight: {missing[:10]}")
        for seq in wanted:
            self._requeued[seq] = self._in_flight.pop(seq)
        self._readable.notify()

    def _frontier_moved(self) -> None:
        # The first move after a persist wakes the commit task so it arms the interval timer;
        # reaching the record count wakes it to persist at once.
        if not self._persist_armed or self._acked_since_persist >= self._persist_records:
            self._persist_armed = True
            self._work.set()

    def _frontier_dirty(self) -> bool:
        return self._frontier_to_persist() != self._persisted_frontier

    def _frontier_to_persist(self) -> int:
        # Never claim acks beyond what is synced: after a crash those seqs are reused.
        return min(self._frontier.frontier, self._durable_next_seq)

    def _persist_due(self) -> bool:
        if not self._frontier_dirty():
            return False
        return (
            self._state != "open"
            or self._acked_since_persist >= self._persist_records
            or time.monotonic() - self._last_persist >= self._persist_interval
        )

    async def _persist_frontier(self) -> None:
        frontier = self._frontier_to_persist()
        doomed = 0
        while doomed + 1 < len(self._segments) and self._segments[doomed + 1].first_seq <= frontier:
            doomed += 1
        paths = [segment.path for segment in self._segments[:doomed]]
        self._last_persist = time.monotonic()
        self._acked_since_persist = 0
        self._persist_armed = False
        try:
            await self._run_io(_save_frontier_and_delete, self._directory, frontier, paths)
        except OSError as error:
            log.error("disk queue %s: cannot persist the frontier: %s", self._directory, error)
            return
        self._persisted_frontier = frontier
        freed = sum(segment.size for segment in self._segments[:doomed])
        del self._segments[:doomed]
        self._disk_bytes -= freed
        if freed:
            self._space.notify()

    # -- consuming ---------------------------------------------------------------------------

    async def get(
        self,
        max_items: int,
        max_bytes: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the consumer API the pipelines share
    ) -> list[Item]:
        """Hand out up to ``max_items`` records (and about ``max_bytes`` of payload; always at
        least one) not handed out before, requeued ones first. Waits for at least one record up
        to ``timeout`` seconds (forever if None); returns [] on timeout. Raises QueueClosedError
        once the queue closes."""
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._state != "open":
                raise QueueClosedError(f"disk queue {self._directory} is {self._state}")
            items = self._take(max_items, max_bytes)
            if not items:
                async with self._read_lock:
                    await self._fill_ready()
                items = self._take(max_items, max_bytes)
            if items:
                return items
            if not await self._readable.wait_until(deadline):
                return []

    def _take(self, max_items: int, max_bytes: int | None) -> list[Item]:
        taken: list[Item] = []
        budget = _BatchBudget(max_items, max_bytes)
        if self._requeued:
            for seq in sorted(self._requeued):
                item = self._requeued[seq]
                if not budget.admits(item):
                    break
                del self._requeued[seq]
                taken.append(item)
        ready = self._ready
        # Fresh records only once every requeued one is out, or order would break.
        while not self._requeued and ready and budget.admits(ready[0]):
            item = ready.popleft()
            self._ready_bytes -= len(item.data)
            taken.append(item)
        in_flight = self._in_flight
        for item in taken:
            in_flight[item.seq] = item
        return taken

    async def _fill_ready(self) -> None:
        """Read the next chunk of records from disk into ``_ready`` if it is empty."""
        while not self._ready and not self._tail_attached and self._state == "open":
            segment = self._read_segment
            assert segment is not None
            if self._read_offset >= segment.size:
                self._advance_reader(segment)
            elif not segment.header_ok:
                self._skip_damage(segment, "bad segment header")
            elif self._read_offset < segment.written:
                await self._read_chunk(segment)
            else:
                return  # the next records are still on their way to disk: the commit notifies

    async def _read_chunk(self, segment: SegmentInfo) -> None:
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(
                asyncio.to_thread(
                    self._reader.read,
                    segment.path,
                    self._read_offset,
                    segment.written,
                    self._read_chunk_bytes,
                )
            )
        # Shielded: if this get() is cancelled, the read goes on and the next get() collects it;
        # the cursor has not moved, so the result still applies.
        result = await asyncio.shield(self._read_task)
        self._read_task = None
        following = self._segment_after(segment)
        limit = following.first_seq if following is not None else None
        seq, offset, frontier = self._read_seq, self._read_offset, self._frontier.frontier
        for frame in result.frames:
            if limit is not None and seq >= limit:
                self._read_offset, self._read_seq = offset, seq
                self._skip_damage(segment, f"more records than the next segment ({limit}) allows")
                return
            if seq >= frontier:  # below it: acked before a restart, already delivered
                self._ready.append(Item(seq, frame.payload, frame.enqueued_ns))
                self._ready_bytes += len(frame.payload)
            seq += 1
            offset += FRAME_OVERHEAD + len(frame.payload)
        self._read_offset, self._read_seq = result.next_offset, seq
        if result.corrupt is not None:
            self._skip_damage(segment, result.corrupt)

    def _advance_reader(self, segment: SegmentInfo) -> None:
        following = self._segment_after(segment)
        if following is None:
            self._tail_attached = True
            return
        if self._read_seq < following.first_seq:
            log.error(
                "disk queue segment %s ends at seq %d but the next one starts at %d: "
                "%d records are missing",
                segment.path,
                self._read_seq,
                following.first_seq,
                following.first_seq - self._read_seq,
            )
            self._corrupt_skips += 1
            self._add_gap(self._read_seq, following.first_seq)
        self._enter_segment(following, following.first_seq)

    def _enter_segment(self, segment: SegmentInfo, seq: int) -> None:
        self._read_segment, self._read_seq = segment, seq
        self._read_offset = HEADER_SIZE if segment.header_ok else 0

    def _skip_damage(self, segment: SegmentInfo, reason: str) -> None:
        following = self._segment_after(segment)
        end_seq = following.first_seq if following is not None else self._next_seq
        lost = segment.size - self._read_offset
        log.error(
            "disk queue segment %s: %s at +%d; skipping %d bytes (seqs %d to %d)",
            segment.path,
            reason,
            self._read_offset,
            lost,
            self._read_seq,
            end_seq - 1,
        )
        self._corrupt_skips += 1
        self._corrupt_skipped_bytes += lost
        self._add_gap(self._read_seq, end_seq)
        self._read_offset, self._read_seq = segment.size, end_seq

    def _add_gap(self, start: int, end: int) -> None:
        if self._frontier.add_gap(start, end):
            self._frontier_moved()

    def _segment_after(self, segment: SegmentInfo) -> SegmentInfo | None:
        for candidate in self._segments:
            if candidate.first_seq > segment.first_seq:
                return candidate
        return None

    def _segment_containing(self, seq: int) -> SegmentInfo | None:
        found = None
        for segment in self._segments:
            if segment.first_seq > seq:
                break
            found = segment
        return found

    # -- observing ---------------------------------------------------------------------------

    def _depth_items(self) -> int:
        frontier = self._frontier
        return self._next_seq - frontier.frontier - frontier.acked_ahead - frontier.gap_seqs_ahead

    def _oldest_enqueued_ns(self) -> int | None:
        if self._depth_items() <= 0:
            return None
        seq = self._frontier.frontier
        item = self._in_flight.get(seq) or self._requeued.get(seq)
        if item is None and self._ready and self._ready[0].seq == seq:
            item = self._ready[0]
        if item is not None:
            return item.enqueued_ns
        # Not in memory: the first record of its segment is as old or older.
        segment = self._segment_containing(seq)
        return segment.first_enqueued_ns if segment is not None and segment.header_ok else None

    def stats(self) -> DiskQueueStats:
        return DiskQueueStats(
            depth_items=self._depth_items(),
            depth_bytes=self._disk_bytes,
            max_bytes=self._max_bytes,
            oldest_enqueued_ns=self._oldest_enqueued_ns(),
            in_flight=len(self._in_flight),
            segments=len(self._segments),
            appends=self._appends,
            acks=self._acks,
            fsyncs=self._fsyncs,
            corrupt_tail_truncations=self._tail_truncations,
            corrupt_tail_bytes=self._tail_bytes_cut,
            corrupt_skips=self._corrupt_skips,
            corrupt_skipped_bytes=self._corrupt_skipped_bytes,
            failed=str(self._failure) if self._failure is not None else None,
        )


class _BatchBudget:
    """Limits of one get(): a count, and a payload byte budget that the first item may exceed
    so that a record larger than the budget still goes out."""

    def __init__(self, max_items: int, max_bytes: int | None) -> None:
        self._items_left = max_items
        self._bytes_left = max_bytes
        self._first = True

    def admits(self, item: Item) -> bool:
        if self._items_left <= 0:
            return False
        size = len(item.data)
        if self._bytes_left is not None:
            if size > self._bytes_left and not self._first:
                return False
            self._bytes_left -= size
        self._items_left -= 1
        self._first = False
        return True


def _settle(waiter: asyncio.Future[None] | None, error: BaseException | None) -> None:
    if waiter is None or waiter.done():
        return
    if error is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(error)
        # Callers that gave up (cancelled) never read it; that is fine, do not log it as lost.
        waiter.exception()


def _save_frontier_and_delete(directory: Path, frontier: int, paths: list[Path]) -> None:
    save_state(directory / STATE_NAME, STATE_VERSION, {"acked_frontier": frontier})
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
