"""The disk queue's read side: hands records out in seq order, each once until acked.

A cursor walks the segment files (disk position of the first record not yet read) and loads
one chunk at a time into ``ready``, so memory stays bounded whatever the backlog. A consumer
that keeps up never touches the disk: while the cursor sits at the write end, new appends are
kept in memory (up to ``ready_cache_bytes``); once the consumer falls further behind, the cache
stops taking records and the cursor reads them back from disk when it gets there.

Only synced records are handed out. An append waits in ``unsynced`` until its group commit has
synced it; if the write fails instead, it is dropped there (its producer was told the put
failed), so a record whose put failed can never be delivered. The disk cursor, likewise, reads
only up to a segment's synced size.

Damage found while reading is logged, copied to quarantine and skipped: in a v2 segment to the
next valid frame, in a v1 segment (no sync marker) to the next segment. The lost seqs become a
gap in the ack frontier so acks can pass, and are counted as corrupt records.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.core.diskqueue.directory import SegmentInfo, SegmentTable
from agent.core.diskqueue.frontier import AckFrontier
from agent.core.diskqueue.segment import HEADER_SIZE, ReadAt, ReadResult, SegmentReader
from agent.core.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Item:
    seq: int
    data: bytes
    enqueued_ns: int
    decoded: object = None  # what the producer said ``data`` stands for; None if read from disk


class QueueReader:
    def __init__(
        self,
        table: SegmentTable,
        frontier: AckFrontier,
        on_gap: Callable[[int, int], None],
        read_chunk_bytes: int,
        ready_cache_bytes: int,
        *,
        request_sync: Callable[[], None] = lambda: None,
    ) -> None:
        self._table = table
        self._frontier = frontier
        self._on_gap = on_gap
        self._read_chunk_bytes = read_chunk_bytes
        self._ready_cache_bytes = ready_cache_bytes
        self._request_sync = request_sync  # a consumer waits for records not yet synced
        self._file = SegmentReader()
        self._read_task: asyncio.Future[ReadResult] | None = None
        self._lock = asyncio.Lock()
        self._segment: SegmentInfo | None = None
        self._offset = 0
        self._seq = 0  # seq of the record at the cursor
        self._at_write_end = False  # appends go straight to ``ready``
        self._waiting_for_write = False  # the next records are not in the file yet
        self._ready: deque[Item] = deque()
        self._ready_bytes = 0
        self._unsynced: deque[Item] = deque()  # appended, handed out once synced
        self._unsynced_bytes = 0
        self._synced_next_seq = table.next_seq  # every seq below this is synced
        self._in_flight: dict[int, Item] = {}
        self._requeued: dict[int, Item] = {}
        self.readable = Wakeup()
        self.corrupt_skips = 0
        self.corrupt_skipped_bytes = 0
        self.corrupt_records = 0
        self.read_errors = 0

    def start_at(self, seq: int) -> None:
        """Place the cursor so that ``seq`` is the first record handed out."""
        table = self._table
        if table.active is None or seq >= table.next_seq:
            self._at_write_end, self._seq = True, table.next_seq
            if table.active is not None:
                self._segment, self._offset = table.active, table.active.size
            return
        # Records of that segment below ``seq`` are read and dropped (they were acked).
        start = table.containing(seq) or table.segments[0]
        self._enter(start)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def offer(self, seq: int, record: bytes, enqueued_ns: int, decoded: object = None) -> None:
        """A record was just appended: keep it in memory if the consumer is caught up."""
        cached = self._ready_bytes + self._unsynced_bytes
        if self._at_write_end and cached < self._ready_cache_bytes:
            self._unsynced.append(Item(seq, record, enqueued_ns, decoded))
            self._unsynced_bytes += len(record)
            segment = self._table.active
            assert segment is not None
            self._segment, self._offset, self._seq = segment, segment.size, seq + 1
        else:
            self._at_write_end = False  # read back from disk when the cursor gets there

    def synced(self, next_seq: int) -> None:
        """Every record below ``next_seq`` is durable: hand out the ones kept in memory, and
        wake a reader that waits for them on disk."""
        self._synced_next_seq = next_seq
        unsynced, ready = self._unsynced, self._ready
        moved = False
        while unsynced and unsynced[0].seq < next_seq:
            item = unsynced.popleft()
            self._unsynced_bytes -= len(item.data)
            ready.append(item)
            self._ready_bytes += len(item.data)
            moved = True
        if moved or self._waiting_for_write:
            self._waiting_for_write = False
            self.readable.notify()

    def rollback(self, next_seq: int) -> None:
        """Appends from ``next_seq`` on were given up: forget them, and put the cursor back."""
        self._unsynced.clear()
        self._unsynced_bytes = 0
        segment = self._segment
        dropped = segment is not None and all(s is not segment for s in self._table.segments)
        if self._seq > next_seq or dropped or (self._at_write_end and self._seq >= next_seq):
            # Everything below ``next_seq`` was read or handed to the cache: at the write end.
            active = self._table.active
            self._segment = active
            self._offset = active.size if active is not None else 0
            self._seq, self._at_write_end = next_seq, True

    # -- handing out -------------------------------------------------------------------------

    async def take(self, max_items: int, max_bytes: int | None) -> list[Item]:
        """Requeued records first, then fresh ones; reads the next chunk from disk if needed.
        Returns [] when nothing is available yet (then wait on ``readable``)."""
        items = self._take(max_items, max_bytes)
        if items:
            return items
        async with self._lock:
            try:
                await self._fill()
            except OSError as error:
                self._read_failed(error)
        items = self._take(max_items, max_bytes)
        if not items and self._unsynced:
            self._request_sync()  # lossy appends: sync now rather than at the interval
        return items

    def _read_failed(self, error: OSError) -> None:
        # EMFILE, EIO...: the records stay on disk; try again shortly rather than fail the
        # consumer (its loop would end and nothing would deliver them until a restart).
        self.read_errors += 1
        self._read_task = None
        log.error("disk queue read failed, retrying in 1s: %s", error)
        asyncio.get_running_loop().call_later(1.0, self.readable.notify)

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

    def settle(self, seq: int) -> Item | None:
        """Forget a handed-out (or requeued) record being acked; None if it was not out."""
        return self._in_flight.pop(seq, None) or self._requeued.pop(seq, None)

    def requeue(self, seqs: Iterable[int]) -> None:
        wanted = list(seqs)
        missing = [seq for seq in wanted if seq not in self._in_flight]
        if missing:
            raise ValueError(f"cannot requeue seqs that are not in flight: {missing[:10]}")
        for seq in wanted:
            self._requeued[seq] = self._in_flight.pop(seq)
        self.readable.notify()

    def item_in_memory(self, seq: int) -> Item | None:
        item = self._in_flight.get(seq) or self._requeued.get(seq)
        for cache in (self._ready, self._unsynced):
            if item is None and cache and cache[0].seq == seq:
                item = cache[0]
        return item

    # -- reading from disk -------------------------------------------------------------------

    async def _fill(self) -> None:
        while not self._ready and not self._at_write_end:
            segment = self._segment
            assert segment is not None
            if self._offset >= segment.size:
                self._advance(segment)
            elif not segment.header_ok:
                self._skip_damage(segment, "bad segment header")
            elif self._offset < segment.synced:
                await self._read_chunk(segment)
            else:
                self._waiting_for_write = True  # still on their way to disk: see synced()
                return

    async def _read_chunk(self, segment: SegmentInfo) -> None:
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(
                asyncio.to_thread(
                    self._file.read,
                    segment.path,
                    ReadAt(self._offset, segment.synced, segment.version, self._seq),
                    self._read_chunk_bytes,
                )
            )
        # Shielded: if this get() is cancelled, the read goes on and the next get() collects it;
        # the cursor has not moved, so the result still applies.
        try:
            result = await asyncio.shield(self._read_task)
        finally:
            if self._read_task is not None and self._read_task.done():
                self._read_task = None
        following = self._table.after(segment)
        limit = following.first_seq if following is not None else None
        seq, is_done = self._seq, self._frontier.is_done
        for frame in result.frames:
            if limit is not None and frame.seq >= limit:
                self._seq = seq
                self._skip_damage(segment, f"more records than the next segment ({limit}) allows")
                return
            if frame.seq > seq:  # the records between were cut out as damage
                self._lost(seq, frame.seq)
            if not is_done(frame.seq):  # done ones were acked before a restart
                self._ready.append(Item(frame.seq, frame.payload, frame.enqueued_ns))
                self._ready_bytes += len(frame.payload)
            seq = frame.seq + 1
        self._offset, self._seq = result.next_offset, seq
        if result.damage is not None:
            self._damaged(segment, result.damage.end - result.damage.start, result.damage.reason)

    def _damaged(self, segment: SegmentInfo, lost_bytes: int, reason: str) -> None:
        self.corrupt_skips += 1
        self.corrupt_skipped_bytes += lost_bytes
        log.error(
            "disk queue segment %s: %s; skipped %d bytes to +%d",
            segment.path,
            reason,
            lost_bytes,
            self._offset,
        )
        if self._offset >= segment.synced:
            # No valid frame after the damage: its records up to the segment's end are lost.
            following = self._table.after(segment)
            end_seq = following.first_seq if following is not None else self._synced_next_seq
            self._lost(self._seq, end_seq)
            self._offset, self._seq = max(self._offset, segment.size), max(self._seq, end_seq)

    def _lost(self, start: int, end: int) -> None:
        # Seqs below the frontier were acked before they were damaged: nothing was lost there.
        self.corrupt_records += max(0, end - max(start, self._frontier.frontier))
        if end > start:
            self._on_gap(start, end)

    def _advance(self, segment: SegmentInfo) -> None:
        following = self._table.after(segment)
        if following is None:
            self._at_write_end = True
            return
        if self._seq < following.first_seq:
            log.error(
                "disk queue segment %s ends at seq %d but the next one starts at %d: "
                "%d records are missing",
                segment.path,
                self._seq,
                following.first_seq,
                following.first_seq - self._seq,
            )
            self.corrupt_skips += 1
            self._lost(self._seq, following.first_seq)
        self._enter(following)

    def _enter(self, segment: SegmentInfo) -> None:
        self._segment, self._seq = segment, segment.first_seq
        self._offset = HEADER_SIZE if segment.header_ok else 0

    def _skip_damage(self, segment: SegmentInfo, reason: str) -> None:
        following = self._table.after(segment)
        end_seq = following.first_seq if following is not None else self._synced_next_seq
        lost = segment.size - self._offset
        log.error(
            "disk queue segment %s: %s at +%d; skipping %d bytes (seqs %d to %d)",
            segment.path,
            reason,
            self._offset,
            lost,
            self._seq,
            end_seq - 1,
        )
        self.corrupt_skips += 1
        self.corrupt_skipped_bytes += lost
        self._lost(self._seq, end_seq)
        self._offset, self._seq = segment.size, max(self._seq, end_seq)

    async def close(self) -> None:
        async with self._lock:
            if self._read_task is not None:
                try:
                    await self._read_task
                except Exception as error:  # the queue is going away; the result is moot
                    log.debug("disk queue read finished with an error on close: %s", error)
            self._file.close()


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
