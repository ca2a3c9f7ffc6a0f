"""A durable FIFO of byte records on local disk, with group commit and out-of-order acks.

Both pipelines buffer through this queue: the message proxy writes every accepted publish here,
and the span exporter spills batches here while Jaeger is down. One process owns a directory
(an ``flock`` on ``LOCK``); records live in append-only segment files (see ``segment.py``),
written by ``appender.py``.

Guarantees
    * ``await put(..., durable=True)`` returns after the record's bytes are fsync'd. Appends that
      arrive while an fsync runs share the next one (group commit), so many concurrent callers
      cost one fsync, not one each. ``durable=False`` returns at once; the record is written
      within ``lossy_write_delay`` (lost if the process dies before that) and synced within
      ``lossy_sync_interval`` or by the next durable put's commit, whichever comes first (lost
      if the host dies before that).
    * ``get`` hands records out in seq order, each once, until it is acked or requeued.
      ``requeue`` hands records out again, before any fresh one. After a restart every record
      not acked is handed out again, in order.
    * ``get`` hands out only synced records: a put that fails (its caller answered 503) can
      never be delivered, lossy or not.
    * Bounded duplicates: acks are persisted as ``persist.py`` says. A crash therefore hands
      out again the records that were in flight plus those acked since the last persist: at
      most about ``frontier_persist_records`` (fewer if the interval ends first), plus any acked
      while the state file was being written. A clean close hands out again exactly the
      unacked records.
    * Damage is cut and counted, never fatal: a torn tail of the last segment is truncated on
      open (``corrupt_tail_truncations``); a bad frame is copied to ``quarantine/`` and skipped
      to the next valid frame, so only the damaged records are lost (``corrupt_records``).
    * Byte limit: ``max_bytes`` bounds the segment files' records (payload + framing +
      headers); the active segment's space reserved ahead (``appender.py``, at most 1 MiB) is
      not counted, so the files can exceed the limit by that much. Space is freed when a
      fully acked segment is deleted, so up to one segment of acked bytes can still count
      against the limit (the slack); the default ``segment_bytes`` of
      ``min(64 MiB, max_bytes / 8)`` keeps that slack to an eighth of the limit.
    * A write or fsync error fails the puts not yet synced (``DiskQueueError``), cuts the files
      back to the last sync and retries that with backoff (``recovery.py``); puts are refused
      until it works, then taken again. ``stats().unrecoverable`` says when it has not worked
      for ``unrecoverable_after`` seconds: a restart is the remaining remedy.

Memory stays bounded whatever the backlog: records are read from disk one chunk at a time
(``read_chunk_bytes``), and recent appends are kept in memory for a caught-up consumer only up
to ``ready_cache_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar, Unpack

from agent.core.diskqueue.directory import SegmentTable, recover
from agent.core.diskqueue.errors import (
    DiskQueueError,
    QueueClosedError,
    QueueFullError,
    QueueLockedError,
    RecordTooLargeError,
)
from agent.core.diskqueue.frontier import AckFrontier
from agent.core.diskqueue.options import QueueOptionArgs, QueueOptions, WhenFull
from agent.core.diskqueue.persist import AckPersister
from agent.core.diskqueue.reader import Item, QueueReader
from agent.core.diskqueue.stats import DiskQueueStats, QueueFacts, collect_stats, depth_items
from agent.core.diskqueue.writer import QueueWriter
from agent.core.wakeup import Wakeup

__all__ = [
    "DiskQueue",
    "DiskQueueError",
    "DiskQueueStats",
    "Item",
    "QueueClosedError",
    "QueueFullError",
    "QueueLockedError",
    "RecordTooLargeError",
    "WhenFull",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class DiskQueue:
    """See the module docstring. Use ``async with DiskQueue(path) as queue`` or open/close."""

    def __init__(
        self, directory: str | os.PathLike[str], **options: Unpack[QueueOptionArgs]
    ) -> None:
        self._directory = Path(directory)
        self._options = QueueOptions(**options).validate()
        self._max_bytes = self._options.max_bytes
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._closed = asyncio.Event()
        self._io: ThreadPoolExecutor | None = None  # recovery and the frontier's state file
        self._lock_fd = -1
        self._space = Wakeup()  # segments were deleted
        self._frontier = AckFrontier()
        self._acks = 0
        self._tail_truncations = self._tail_bytes_cut = 0
        self._broken: DiskQueueError | None = None  # what recovery cannot fix
        # Built by open() from what recovery finds on disk.
        self._table = SegmentTable([], 0)
        self._writer: QueueWriter | None = None
        self._reader: QueueReader | None = None
        self._persister: AckPersister | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> DiskQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Lock the directory, recover what is on disk and start the writer thread.

        Raises QueueLockedError if another process (or another open queue) owns the directory.
        """
        if self._state != "new":
            raise DiskQueueError(f"disk queue is {self._state}; open() works once")
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diskqueue-io")
        try:
            found = await asyncio.get_running_loop().run_in_executor(io, recover, self._directory)
        except BaseException:
            io.shutdown(wait=False)
            raise
        self._io, self._lock_fd = io, found.lock_fd
        self._tail_truncations, self._tail_bytes_cut = found.tail_truncations, found.tail_bytes_cut
        self._table = SegmentTable(found.segments, found.next_seq)
        self._frontier = AckFrontier(found.frontier, found.done_ranges)
        self._writer = QueueWriter(
            self._directory,
            self._table,
            self._options.segment_size,
            self._max_bytes,
            max_unwritten_bytes=self._options.max_unwritten_bytes,
            write_delay=self._options.lossy_write_delay,
            sync_interval=self._options.lossy_sync_interval,
            on_commit=self._on_commit,
            on_rollback=self._on_rollback,
        )
        self._reader = QueueReader(
            self._table,
            self._frontier,
            self._add_gap,
            self._options.read_chunk_bytes,
            self._options.ready_cache_bytes,
            request_sync=self._request_sync,
        )
        writer = self._writer
        self._persister = AckPersister(
            self._directory,
            self._table,
            self._frontier,
            interval=self._options.frontier_persist_interval,
            records=self._options.frontier_persist_records,
            run_io=self._run_io,
            durable_next_seq=lambda: writer.durable_next_seq,
            on_space=self._space.notify,
        )
        # From the frontier after reloaded ranges merged in: segments below it may be deleted.
        self._reader.start_at(self._frontier.frontier)
        self._state = "open"
        self._writer.start()
        self._persister.start(self._persister_died)

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
        writer = self._opened()[0]
        interrupted: BaseException | None = None
        try:
            await writer.stop(abort=False)
            if self._persister is not None:
                await self._persister.stop()
        except Exception:
            log.exception("disk queue %s: error while closing", self._directory)
        except BaseException as error:  # cancelled: release all the same, then re-raise
            interrupted = error
        # Released outside the handlers (docs/architecture.md: mypyc).
        await self._release()
        if interrupted is not None:
            raise interrupted

    async def abort(self) -> None:
        """Stop at once, like a crash: no flush, no frontier persist; releases the directory.

        What was written stays in the page cache, as after ``kill -9``. For forced shutdowns.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        self._state = "closing"
        self._wake_everyone()
        writer = self._opened()[0]
        if self._persister is not None:
            await self._persister.abort()
        await writer.stop(abort=True)
        await self._release()

    async def _release(self) -> None:
        writer, reader = self._opened()
        await writer.stop(abort=True)  # already stopped, unless closing failed half-way
        await reader.close()
        if self._io is not None:
            # A state-file save still running (abort cancels only the task awaiting it) must
            # end before the directory is released, or it could replace the next owner's.
            await asyncio.to_thread(self._io.shutdown)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        self._state = "closed"
        self._closed.set()

    def _wake_everyone(self) -> None:
        self._space.notify()
        if self._reader is not None:
            self._reader.readable.notify()

    def _opened(self) -> tuple[QueueWriter, QueueReader]:
        if self._writer is None or self._reader is None:
            raise QueueClosedError(f"disk queue {self._directory} is not open")
        return self._writer, self._reader

    async def _run_io(self, function: Callable[..., _T], *args: object) -> _T:
        assert self._io is not None
        return await asyncio.get_running_loop().run_in_executor(self._io, function, *args)

    # -- producing ---------------------------------------------------------------------------

    async def put(self, record: bytes, *, durable: bool = True, decoded: object = None) -> int:
        """Append one record; returns its seq. See :meth:`put_many` (this is its one-record
        case without the extra coroutine: a single publish takes this path)."""
        writer, reader = self._writable()
        records = (record,)
        if self._table.disk_bytes + writer.space_needed(records) > self._max_bytes:
            await self._wait_for_space(writer, records)
        seqs, synced = writer.append_many(
            records, (decoded,), time.time_ns(), durable=durable, on_append=reader.offer
        )
        if synced is not None:
            await synced
        return seqs[0]

    async def put_many(
        self,
        records: Sequence[bytes],
        *,
        durable: bool = True,
        decoded: Sequence[object] | None = None,
    ) -> list[int]:
        """Append records in order; returns their seqs. All records go in, or none.

        With ``durable`` it returns once the records are fsync'd (sharing the fsync with every
        append that joined the same group commit). When the byte limit leaves no room it raises
        QueueFullError at once (``when_full="reject"``) or after waiting up to ``full_timeout``
        seconds for acks to free a segment (``"block"``). RecordTooLargeError: can never fit.

        ``decoded`` (one per record) is what the records' bytes stand for: a consumer that
        gets a record while it is still in memory finds it in ``Item.decoded`` and need not
        decode the bytes (records read back from disk have None there).
        """
        writer, reader = self._writable()
        if not records:
            return []
        if self._table.disk_bytes + writer.space_needed(records) > self._max_bytes:
            await self._wait_for_space(writer, records)
        seqs, synced = writer.append_many(
            records, decoded, time.time_ns(), durable=durable, on_append=reader.offer
        )
        if synced is not None:
            await synced
        return seqs

    async def sync(self) -> None:
        """Return once every record put so far is fsync'd: the wait of a durable put, for a
        caller that answers for records others put with ``durable=False``."""
        writer, _ = self._writable()
        synced = writer.sync_all()
        if synced is not None:
            await synced

    async def _wait_for_space(self, writer: QueueWriter, records: Sequence[bytes]) -> None:
        if self._options.when_full == "reject":
            raise self._full_error()
        deadline = asyncio.get_running_loop().time() + self._options.full_timeout
        while self._table.disk_bytes + writer.space_needed(records) > self._max_bytes:
            if not await self._space.wait_until(deadline):
                raise self._full_error()
            self._writable()

    def _full_error(self) -> QueueFullError:
        return QueueFullError(self._depth_items(), self._table.disk_bytes, self._max_bytes)

    def _writable(self) -> tuple[QueueWriter, QueueReader]:
        writer, reader = self._opened()
        if self._broken is not None:
            raise self._broken
        if writer.failure is not None:
            raise writer.failure
        if self._state != "open":
            raise QueueClosedError(f"disk queue {self._directory} is {self._state}")
        return writer, reader

    # -- commits, failures and acks ----------------------------------------------------------

    def _on_commit(self, written: bool) -> None:
        writer, reader = self._opened()
        if written:
            reader.synced(writer.durable_next_seq)
        self._space.notify()  # blocked puts must see a failure, or a recovery

    def _on_rollback(self, next_seq: int) -> None:
        self._opened()[1].rollback(next_seq)

    def _request_sync(self) -> None:
        writer = self._writer
        if writer is not None and writer.failure is None and self._state == "open":
            writer.sync_all()  # the consumer is woken through synced(); nobody awaits this

    def _persister_died(self, error: BaseException) -> None:
        self._broken = DiskQueueError(f"disk queue persist task died: {error!r}")
        if self._writer is not None:
            self._writer.fail_waiters(self._broken)
        self._space.notify()

    def _add_gap(self, start: int, end: int) -> None:
        self._frontier.add_gap(start, end)
        if self._persister is not None:
            self._persister.changed()

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
        reader = self._opened()[1]
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            if self._state != "open":
                raise QueueClosedError(f"disk queue {self._directory} is {self._state}")
            items = await reader.take(max_items, max_bytes)
            if items:
                return items
            if not await reader.readable.wait_until(deadline):
                return []

    def ack(self, seq: int) -> None:
        """Mark a handed-out record done. Acking twice is a no-op; so is an ack after close
        (the record is handed out again after the next open, within the duplicates bound)."""
        reader = self._reader
        item = reader.settle(seq) if reader is not None else None
        if item is None:
            if self._frontier.is_done(seq) or self._state != "open":
                return
            raise ValueError(f"seq {seq} was not handed out by get()")
        self._acks += 1
        self._frontier.ack(seq)
        if self._persister is not None:
            self._persister.acked()

    def ack_many(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self.ack(seq)

    def requeue(self, seqs: Iterable[int]) -> None:
        """Hand these in-flight records out again, before any fresh record and in seq order."""
        self._opened()[1].requeue(seqs)

    # -- observing ---------------------------------------------------------------------------

    def _depth_items(self) -> int:
        return depth_items(self._table, self._frontier)

    def stats(self) -> DiskQueueStats:
        return collect_stats(
            self._table,
            self._frontier,
            self._writer,
            self._reader,
            QueueFacts(
                self._max_bytes,
                self._acks,
                self._tail_truncations,
                self._tail_bytes_cut,
                self._broken,
                self._options.unrecoverable_after,
            ),
        )
