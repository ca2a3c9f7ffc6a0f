"""Reading one followed file into a :class:`LineBatch`, and what a read result means for it:
growth, end of file, truncation (copytruncate), the last batch of a file let go after rotation.

The blocking reads run in a worker thread; the bookkeeping on the event loop. A parked file
(closed to stay within spans.max_open_files, see ``descriptors``) is opened again first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from agent.spans.tail.fileset import FileSet, TailerMetrics
from agent.spans.tail.linereader import OversizeLine, ReadResult
from agent.spans.tail.trackedfile import TrackedFile
from agent.spans.types import HeldLines, LineBlock

log = logging.getLogger("agent.spans.tail.tailer")


@dataclass(slots=True)
class LineBatch(HeldLines):
    file_key: str
    path: str
    lines: list[bytes]
    """Complete lines, newline (and a trailing carriage return) removed; empty when `block`
    holds the batch's lines."""
    end_offset: int
    """Offset just past the last record consumed: the commit point of this batch. A batch may
    hold no lines at all when it only moves the commit point (a skipped line fragment)."""
    oversize: list[OversizeLine]
    rotated: bool = False
    """The final batch of a file rotated away or deleted and now fully read."""
    block: LineBlock | None = None
    """The batch's lines unsplit, as read (agent.spans.tail.linereader)."""


class BatchReader:
    def __init__(
        self,
        files: FileSet,
        metrics: TailerMetrics,
        *,
        open_flags: int,
        max_lines: int,
        chunk_bytes: int,
    ) -> None:
        self._files = files
        self._metrics = metrics
        self._open_flags = open_flags
        self.max_lines = max_lines
        self.chunk_bytes = chunk_bytes

    async def read(self, tracked: TrackedFile) -> LineBatch | None:
        try:
            if tracked.parked:
                await self._reopen(tracked)
            self._files.descriptors.touch(tracked)
            if tracked.identity is None:
                if not await asyncio.to_thread(tracked.settle, final=tracked.let_go_due):
                    tracked.at_eof = True  # no complete line yet: nothing to read until it grows
                    return None
                closing = self._closing_batch(tracked)
                if closing is not None:
                    self._files.mark_ready(tracked)
                    return closing
            result = await asyncio.to_thread(tracked.read_next, self.max_lines, self.chunk_bytes)
        except FileNotFoundError as error:
            if not tracked.parked:
                raise
            return self._lost(tracked, error)
        except OSError as error:
            # One unreadable file must not stop the others; it is tried again when it grows.
            log.error(
                "cannot read span log file", extra={"path": tracked.path, "error": repr(error)}
            )
            return None
        return self._after_read(tracked, result)

    async def _reopen(self, tracked: TrackedFile) -> None:
        self._files.descriptors.make_room(keep=tracked, room=1)
        await asyncio.to_thread(tracked.reopen, self._open_flags)
        self._files.descriptors.reopened(tracked)

    def _lost(self, tracked: TrackedFile, error: OSError) -> LineBatch | None:
        """A parked file renamed out of sight or deleted: what it got after it was parked
        cannot be read. Its key is closed like that of a file let go after rotation."""
        self._files.descriptors.lost.inc()
        log.warning(
            "span log file closed while idle is gone; lines appended after it was closed "
            "are not read",
            extra={"path": tracked.path, "offset": tracked.reader.offset, "error": repr(error)},
        )
        offset = tracked.reader.offset
        return self._release(tracked, ReadResult(end_offset=offset, file_size=offset, final=True))

    def _after_read(self, tracked: TrackedFile, result: ReadResult) -> LineBatch | None:
        now = time.monotonic()
        if result.truncated:
            self._on_truncated(tracked, result)
            self._files.mark_ready(tracked)
            return None
        if result.file_size != tracked.seen_size:
            tracked.seen_size = result.file_size
            tracked.last_growth = now
        tracked.at_eof = result.at_eof
        tracked.let_go_due = False
        self._count(result)
        if result.final:
            return self._release(tracked, result)
        if result.at_eof:
            tracked.drain_first = False
        else:
            self._files.mark_ready(tracked)
        if result.line_count or result.oversize or result.end_offset != tracked.last_end:
            return self._batch(tracked, result)
        return None

    @staticmethod
    def _batch(tracked: TrackedFile, result: ReadResult) -> LineBatch:
        assert tracked.identity is not None
        tracked.known, tracked.last_end = True, result.end_offset
        return LineBatch(
            tracked.identity.key,
            tracked.path,
            result.lines,
            result.end_offset,
            result.oversize,
            block=result.block,
        )

    def _count(self, result: ReadResult) -> None:
        if result.line_count:
            self._metrics.lines.inc(result.line_count)
        if result.consumed_bytes:
            self._metrics.bytes.inc(result.consumed_bytes)
        if result.oversize:
            self._metrics.oversize.inc(len(result.oversize))

    def _on_truncated(self, tracked: TrackedFile, result: ReadResult) -> None:
        self._metrics.truncations.inc()
        if result.lost_partial_bytes:
            self._metrics.lost_partials.inc()
        log.warning(
            "span log file shrank (copytruncate?); reading it again from the start",
            extra={"path": tracked.path, "lost_partial_bytes": result.lost_partial_bytes},
        )
        if tracked.identity is not None and tracked.known and tracked.retiring is None:
            tracked.retiring, tracked.retiring_offset = tracked.identity, tracked.last_end
        tracked.identity = None
        tracked.seen_size = result.file_size
        tracked.at_eof = False

    def _closing_batch(self, tracked: TrackedFile) -> LineBatch | None:
        """After a truncation, once the new content's identity is known: close the old key if
        the identity changed; keep it (offsets restart at 0) if it did not."""
        old, tracked.retiring = tracked.retiring, None
        if old is None or tracked.identity is None:
            return None
        if old.key == tracked.identity.key:
            tracked.last_end = tracked.retiring_offset
            return None
        tracked.known, tracked.last_end = False, 0
        return LineBatch(old.key, tracked.path, [], tracked.retiring_offset, [], rotated=True)

    def _release(self, tracked: TrackedFile, result: ReadResult) -> LineBatch | None:
        self._files.forget(tracked)
        log.info(
            "rotated span log file read to its end and let go",
            extra={"path": tracked.path, "offset": result.end_offset},
        )
        if tracked.identity is None:
            return None
        if result.line_count or result.oversize or tracked.known:
            batch = self._batch(tracked, result)
            batch.rotated = True
            return batch
        return None
