"""The disk queue's write side: appends are placed in the event loop and written by one thread.

``append_many`` decides at once where each record lands (seq, segment, offset), so order and
segment rolls are settled without I/O. The bytes wait in memory for the writer thread, which
loops: take everything pending → write it → ``fdatasync`` if anyone waits for durability → add
1 to an eventfd that the event loop watches. Appends that arrive while a sync runs share the
next one (group commit: one sync for many appends), and the next commit starts as soon as the
last one ends, without a round trip through the event loop.

Commits are told to the event loop through that eventfd, not ``call_soon_threadsafe``: the
thread queues each commit (``_in_flight``) before its I/O, and the loop, woken by the eventfd,
completes as many commits, oldest first, as the counter says were done. So the last steps of a
commit (write, sync, wake-up) can run in one call without the GIL (``commitio``, native build):
the loop learns a commit is durable without first handing the GIL to the writer thread, which
would otherwise have to take it back after each blocking call and again to call the loop. A
failure, a recovery and the thread's end still go through ``call_soon_threadsafe``; each first
completes the commits the eventfd already counted, so the loop sees everything in the thread's
order.

Lossy appends (nobody waits) are written within ``write_delay`` and synced within
``sync_interval``, or sooner by a durable append's commit: a busy lossy producer then costs a
write every few milliseconds instead of a thread wake-up and a sync per event-loop iteration.

A failed write or sync (ENOSPC, EIO, EMFILE...) does not end the thread. Everything not yet
synced is given up: its waiters fail (their callers answer 503, and the records never reach a
consumer, which only sees synced records), and the table rolls back to the last sync. The thread
then reopens the files and cuts them back to what was synced, re-verifies the active segment,
and retries that with backoff until it works; meanwhile puts are refused. See ``recovery.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.core.diskqueue.appender import PendingWrite, SegmentWriter
from agent.core.diskqueue.directory import SegmentInfo, SegmentTable
from agent.core.diskqueue.errors import DiskQueueError, QueueClosedError, RecordTooLargeError
from agent.core.diskqueue.frames import FRAME_OVERHEAD, encode_frame_head
from agent.core.diskqueue.recovery import RecoveryBackoff, Rollback, plan_rollback
from agent.core.diskqueue.segment import (
    HEADER_SIZE,
    SEGMENT_VERSION,
    encode_header,
    segment_name,
)

log = logging.getLogger(__name__)

Stop = Literal["", "close", "abort"]


@dataclass(slots=True)
class _Commit:
    """What the thread took in one go, and what the event loop learns when it is done."""

    chunks: list[PendingWrite]
    written_ends: list[tuple[SegmentInfo, int]]
    next_seq: int  # every seq below this is in ``chunks`` or written before
    waiters: list[asyncio.Future[None]]
    sync: bool


class QueueWriter:
    def __init__(
        self,
        directory: Path,
        table: SegmentTable,
        segment_bytes: int,
        max_bytes: int,
        *,
        max_unwritten_bytes: int,
        write_delay: float,
        sync_interval: float,
        on_commit: Callable[[bool], None],
        on_rollback: Callable[[int], None],
        backoff: RecoveryBackoff | None = None,
    ) -> None:
        self._directory = directory
        self._table = table
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._max_unwritten_bytes = max_unwritten_bytes
        self._write_delay = write_delay
        self._sync_interval = sync_interval
        self._on_commit = on_commit  # True: bytes were written; False: the write failed
        self._on_rollback = on_rollback  # everything from this seq on was given up
        self._backoff = backoff or RecoveryBackoff()
        # Shared with the thread, under the lock: what to write and who waits for it.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[SegmentInfo, PendingWrite]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._sync_wanted = False
        self._write_due: float | None = None  # when lossy appends must be written
        self._thread_idle = False
        self._stop: Stop = ""
        self._rollback: Rollback | None = None  # what the thread must undo on disk
        # Taken by the thread, completed by the event loop when the eventfd counts it done.
        self._in_flight: deque[_Commit] = deque()
        self._done_fd = self._done_write_fd = -1  # +1 per commit done (see _done_channel)
        # The thread's own.
        self._file = SegmentWriter(segment_bytes)
        self._unsynced_since: float | None = None
        # The event loop's own.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: threading.Thread | None = None
        self._exited: asyncio.Future[None] | None = None
        self.pending_bytes = 0
        self.durable_next_seq = table.next_seq  # every seq below this is synced
        self.failure: DiskQueueError | None = None
        self.failing_since: float | None = None  # no write has succeeded since (monotonic)
        self.appends = 0
        self.commits = 0  # data syncs
        self.io_errors = 0
        self.recoveries = 0
        self.records_given_up = 0  # appended, never synced, dropped by a rollback

    @property
    def reservations_refused(self) -> int:
        """Times the file system refused to reserve space ahead (appends went on without)."""
        return self._file.reservations_refused

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exited = self._loop.create_future()
        self._done_fd, self._done_write_fd = _done_channel()
        self._loop.add_reader(self._done_fd, self._collect)
        self._worker = threading.Thread(
            target=self._run, name=f"diskqueue-writer-{self._directory.name}", daemon=True
        )
        self._worker.start()

    async def stop(self, *, abort: bool) -> None:
        """Flush and sync everything (``abort``: drop it, as a crash would) and end the thread."""
        if self._worker is None or self._exited is None:
            return
        with self._wake:
            if self._stop != "abort":
                self._stop = "abort" if abort else "close"
            self._wake.notify()
        await asyncio.shield(self._exited)
        self._worker.join()
        self._collect()
        self._close_done_fd()
        self.fail_waiters(self.failure or QueueClosedError("disk queue aborted"))

    def _close_done_fd(self) -> None:
        if self._done_fd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._done_fd)
            os.close(self._done_fd)
            if self._done_write_fd != self._done_fd:
                os.close(self._done_write_fd)
            self._done_fd = self._done_write_fd = -1

    # -- the event loop's side ---------------------------------------------------------------

    def space_needed(self, records: Sequence[bytes]) -> int:
        """Disk bytes ``records`` would take, including headers of segments they would open.

        Raises RecordTooLargeError for a record bigger than a segment, or a batch bigger than
        the queue can hold once everything else is acked (all but the active segment deleted).
        """
        active = self._table.active
        size = active.size if active is not None and _appendable(active) else None
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

    def append_many(
        self,
        records: Sequence[bytes],
        decoded: Sequence[object] | None,
        enqueued_ns: int,
        *,
        durable: bool,
        on_append: Callable[[int, bytes, int, object], None],
    ) -> tuple[list[int], asyncio.Future[None] | None]:
        """Place ``records`` at the end of the log, calling ``on_append(seq, record,
        enqueued_ns, decoded)`` after each. Returns their seqs and, if ``durable`` (or once more
        than ``max_unwritten_bytes`` wait, so that memory stays bounded), a future that
        completes once they are synced (it fails if the write does)."""
        with self._lock:
            seqs = []
            for index, record in enumerate(records):
                seq = self._append(record, enqueued_ns)
                on_append(seq, record, enqueued_ns, decoded[index] if decoded else None)
                seqs.append(seq)
            if durable or self.pending_bytes > self._max_unwritten_bytes:
                return seqs, self._wait_for_sync()
            if self._write_due is None:
                self._write_due = time.monotonic() + self._write_delay
                if self._thread_idle:
                    self._wake.notify()
        return seqs, None

    def sync_all(self) -> asyncio.Future[None] | None:
        """A future completed once everything appended so far is synced; None if it is."""
        with self._lock:
            if self.durable_next_seq >= self._table.next_seq:
                return None
            return self._wait_for_sync()

    def _append(self, record: bytes, enqueued_ns: int) -> int:
        table = self._table
        seq = table.next_seq
        frame_bytes = FRAME_OVERHEAD + len(record)
        segment = table.active
        if (
            segment is None
            or not _appendable(segment)
            or self._must_roll(segment.size, frame_bytes)
        ):
            segment = self._roll(seq, enqueued_ns)
        pending = self._pending
        if pending and pending[-1][0] is segment:
            chunk = pending[-1][1]
        else:
            chunk = PendingWrite(segment.path, segment.size, [])
            pending.append((segment, chunk))
        chunk.parts.append(encode_frame_head(record, seq, enqueued_ns))
        chunk.parts.append(record)
        chunk.size += frame_bytes
        segment.size += frame_bytes
        table.disk_bytes += frame_bytes
        table.next_seq = seq + 1
        self.pending_bytes += frame_bytes
        self.appends += 1
        return seq

    def _roll(self, first_seq: int, enqueued_ns: int) -> SegmentInfo:
        path = self._directory / segment_name(first_seq)
        segment = SegmentInfo(first_seq, path, HEADER_SIZE, 0, enqueued_ns, synced=0)
        self._table.segments.append(segment)
        header = encode_header(first_seq, enqueued_ns)
        self._pending.append((segment, PendingWrite(path, 0, [header], HEADER_SIZE, create=True)))
        self._table.disk_bytes += HEADER_SIZE
        self.pending_bytes += HEADER_SIZE
        return segment

    def _wait_for_sync(self) -> asyncio.Future[None]:
        # One future per caller (cheaper than shielding a shared one): a caller that gives up
        # cancels only its own.
        assert self._loop is not None, "start() first"
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        if not self._sync_wanted:
            self._sync_wanted = True
            if self._thread_idle:
                self._wake.notify()
        return waiter

    def _collect(self) -> None:
        """Complete, oldest first, the commits the thread has counted done on the eventfd."""
        if self._done_fd < 0:
            return
        try:
            counts = os.read(self._done_fd, 1 << 16)
        except BlockingIOError:
            return  # collected already, by a callback of the thread's that came first
        # One native 8-byte integer from an eventfd (its count), one per commit from a pipe.
        for _ in range(sum(memoryview(counts).cast("Q"))):
            self._committed(self._in_flight.popleft())

    def _committed(self, commit: _Commit) -> None:
        for segment, end in commit.written_ends:
            segment.written = max(segment.written, end)
        if commit.sync:
            self.commits += 1
            self.durable_next_seq = commit.next_seq
            # A sync covers every segment: earlier ones were synced when the next was opened.
            for segment in self._table.segments:
                segment.synced = segment.written
        self.failing_since = None
        for waiter in commit.waiters:
            settle(waiter, None)
        self._on_commit(True)

    def _failed(self, error: BaseException, commit: _Commit | None) -> None:
        """The thread's write or sync failed: give up everything not synced, roll back."""
        self._collect()  # commits done before the failure: their syncs count
        self.io_errors += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        log.error("disk queue %s: write failed, recovering: %s", self._directory, error)
        self.failure = DiskQueueError(f"disk queue write failed: {error}")
        self.failure.__cause__ = error
        for waiter in commit.waiters if commit is not None else ():
            settle(waiter, self.failure)
        with self._wake:
            # Appends that queued up behind the failed write cannot be trusted to land either.
            self._pending, self.pending_bytes = [], 0
            self._sync_wanted, self._write_due = False, None
            self.records_given_up += self._table.next_seq - self.durable_next_seq
            self._rollback = plan_rollback(self._directory, self._table, self.durable_next_seq)
            self._wake.notify()
        self.fail_waiters(self.failure)
        self._on_rollback(self.durable_next_seq)
        self._on_commit(False)

    def _recovered(self) -> None:
        self._collect()
        log.warning("disk queue %s: recovered; taking puts again", self._directory)
        self.recoveries += 1
        self.failure = None
        self._on_commit(False)  # wakes puts blocked on space

    def fail_waiters(self, error: DiskQueueError) -> None:
        """Release callers waiting for a sync that will not happen."""
        with self._wake:
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            settle(waiter, error)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._write_until_stopped():
                if not self._recover():
                    break
        finally:
            if self._exited is not None:
                self._tell_loop(self._exited.set_result, None)

    def _write_until_stopped(self) -> bool:
        """Commit until told to stop (False) or until a write fails (True: recover)."""
        commit: _Commit | None = None
        try:
            while (commit := self._next_commit()) is not None:
                self._in_flight.append(commit)
                self._file.commit(commit.chunks, sync=commit.sync, notify_fd=self._done_write_fd)
                if commit.sync:
                    self._unsynced_since = None
                    self._backoff.succeeded()
                elif self._unsynced_since is None:
                    self._unsynced_since = time.monotonic()
            self._finish_file()
            return False
        except Exception as error:
            if commit is not None and self._in_flight and self._in_flight[-1] is commit:
                self._in_flight.pop()  # not counted done: `_failed` settles its waiters
            # What failed may be half on disk, and after a failed fsync the page cache can no
            # longer be trusted to match the file: close it and cut back to the last sync.
            self._file.abandon()
            self._unsynced_since = None
            self._tell_loop(self._failed, error, commit)
            return True

    def _recover(self) -> bool:
        """Undo what was not synced, retrying with backoff; False if told to stop first."""
        with self._wake:
            while self._rollback is None and not self._stop:
                self._wake.wait()
            rollback, self._rollback = self._rollback, None
        while rollback is not None and not self._stop:
            delay = self._backoff.next_delay()
            with self._wake:
                if self._wake.wait_for(lambda: bool(self._stop), timeout=delay):
                    return False
            try:
                rollback.apply()
            except Exception as error:
                log.error("disk queue %s: recovery failed, retrying: %s", self._directory, error)
                continue
            self._tell_loop(self._recovered)
            return True
        return False

    def _next_commit(self) -> _Commit | None:
        """Wait until something must be written or synced; take it. None: stop now."""
        with self._wake:
            while True:
                if self._stop == "abort":
                    return None
                if self._stop == "close":
                    done = not (self._pending or self._waiters or self._unsynced_since)
                    # The last commit syncs, and tells the event loop, what is left.
                    return None if done else self._take(sync=True)
                now = time.monotonic()
                sync_due = self._sync_due()
                if sync_due is not None and now >= sync_due:
                    return self._take(sync=True)
                if self._sync_wanted or (self._write_due is not None and now >= self._write_due):
                    return self._take(sync=self._sync_wanted)
                deadlines = [due for due in (self._write_due, sync_due) if due is not None]
                self._thread_idle = True
                self._wake.wait(min(deadlines) - now if deadlines else None)
                self._thread_idle = False

    def _sync_due(self) -> float | None:
        since = self._unsynced_since
        return None if since is None else since + self._sync_interval

    def _take(self, *, sync: bool) -> _Commit:
        pending = self._pending
        commit = _Commit(
            chunks=[chunk for _segment, chunk in pending],
            written_ends=[(segment, segment.size) for segment, _chunk in pending],
            next_seq=self._table.next_seq,
            waiters=self._waiters,
            sync=sync,
        )
        self._pending, self._waiters, self.pending_bytes = [], [], 0
        self._sync_wanted, self._write_due = False, None
        return commit

    def _finish_file(self) -> None:
        if self._stop == "abort":
            self._file.abandon()  # as a crash would leave it: no sync
        else:
            self._file.close()

    def _tell_loop(self, callback: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is gone: nobody is left to tell
            log.debug("disk queue %s: event loop closed before the writer", self._directory)


def _done_channel() -> tuple[int, int]:
    """The read and write ends the thread counts done commits on: an eventfd (one descriptor)
    where there is one (Linux), else a pipe whose reads never block. Each count written is
    ``appender.DONE``; a pipe's 8-byte writes are atomic, so a read holds whole counts."""
    eventfd = getattr(os, "eventfd", None)
    if eventfd is not None:
        fd: int = eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return fd, fd
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    return read_end, write_end


def _appendable(segment: SegmentInfo) -> bool:
    """Appends go to a sound segment of today's format; otherwise a new one is started."""
    return segment.header_ok and segment.version == SEGMENT_VERSION


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
