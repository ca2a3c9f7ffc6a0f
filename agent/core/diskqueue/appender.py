"""Appends to the active segment file, into space reserved ahead of the writes.

The active segment is grown with ``posix_fallocate`` up to ``RESERVE_AHEAD`` bytes past its last
frame (never past the segment limit), and frames are written with ``pwritev`` at the writer's
own offset. A write then lands inside the file's size, so the ``fdatasync`` of a commit need not
also commit a new file size: one reservation (and one size change) serves about a mebibyte of
appends instead of every one. The reserved space reads as zeros; recovery knows an all-zero
tail for what it is (``segment.py``). Sealing or closing a segment trims it to its last frame
and fsyncs it, so only the last segment can hold reserved space after a crash.

A reservation the file system refuses (ENOSPC, EFBIG, EOPNOTSUPP) is not an error: appends go
on without one, as plain appends that grow the file, and the refusal is counted
(``reservations_refused``); the next try is made in the next segment. Only a failed write or
sync is the queue's failure.

Everything here runs in the queue's writer thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.core.atomicfile import FILE_MODE, fsync_dir, write_all_at
from agent.core.diskqueue import commitio

RESERVE_AHEAD = 1 << 20
DONE = (1).to_bytes(8, sys.byteorder)
"""What counts a commit done: 1 as the 8-byte native integer an eventfd adds to its count (a
pipe, where there is no eventfd, carries one such integer per commit); commitio writes it too."""
_sync_data = getattr(os, "fdatasync", os.fsync)
_fallocate = getattr(os, "posix_fallocate", None)


@dataclass(slots=True)
class PendingWrite:
    """Bytes bound for one segment file at ``offset``: ``size`` bytes in ``parts``. ``create``:
    the file does not exist yet (``parts`` start with its header, at offset 0)."""

    path: Path
    offset: int
    parts: list[bytes]
    size: int = 0
    create: bool = False


class SegmentWriter:
    """Appends to the active segment file. Used only from the queue's writer thread."""

    def __init__(self, segment_bytes: int, reserve_ahead: int = RESERVE_AHEAD) -> None:
        self._segment_bytes = segment_bytes
        self._reserve_ahead = reserve_ahead
        self._fd: int | None = None
        self._path: Path | None = None
        self._created = False  # a segment was created since the last sync: fsync the directory
        self._end = 0  # where the last frame written to the active segment ends
        self._file_size = 0  # the active segment's size: frames, then reserved space
        self._reserving = _fallocate is not None  # until refused, in this segment
        self.reservations_refused = 0

    def commit(self, pending: list[PendingWrite], *, sync: bool, notify_fd: int) -> None:
        """Write every pending chunk, make them durable if ``sync``, then count the commit done
        on ``notify_fd`` (``DONE``: an eventfd, or a pipe); raises OSError (and counts
        nothing) if a step fails.

        The common commit (one chunk, into the open segment, no directory entry to sync) is one
        ``commitio.commit`` call: with the native build, its write, data sync and wake-up of the
        event loop happen with the GIL released once."""
        if not pending:
            if sync:
                self.sync()
            os.write(notify_fd, DONE)
            return
        last = pending[-1]
        for chunk in pending[:-1]:
            self._write(chunk)
        fd = self._prepare(last)
        if sync and self._created:  # a new segment's directory entry must be synced too
            self._write(last)
            self.sync()
            os.write(notify_fd, DONE)
            return
        commitio.commit(fd, last.parts, last.offset, sync, notify_fd)
        self._wrote(last)

    def _write(self, chunk: PendingWrite) -> None:
        write_all_at(self._prepare(chunk), chunk.parts, chunk.offset)
        self._wrote(chunk)

    def _prepare(self, chunk: PendingWrite) -> int:
        """The descriptor ``chunk`` goes to, its segment open and space reserved for it."""
        if chunk.path != self._path:
            self._switch_to(chunk)
        assert self._fd is not None
        end = chunk.offset + chunk.size
        if end > self._file_size and self._reserving:
            self._reserve(self._fd, end)
        return self._fd

    def _wrote(self, chunk: PendingWrite) -> None:
        end = chunk.offset + chunk.size
        self._end = end
        self._file_size = max(self._file_size, end)

    def sync(self) -> None:
        """Make everything written so far durable: one data sync (and the directory's entry of
        a segment created since the last one)."""
        if self._fd is not None:
            _sync_data(self._fd)
        if self._created and self._path is not None:
            fsync_dir(self._path.parent)
        self._created = False

    def _reserve(self, fd: int, end: int) -> None:
        target = max(end, min(end + self._reserve_ahead, self._segment_bytes))
        assert _fallocate is not None
        try:
            _fallocate(fd, self._file_size, target - self._file_size)
        except OSError:
            # Not the queue's failure: the write below grows the file instead, and fails
            # itself if the space is really gone.
            self._reserving = False
            self.reservations_refused += 1
            return
        self._file_size = target

    def _switch_to(self, chunk: PendingWrite) -> None:
        # The previous segment is trimmed and synced (and its directory entry) before the next
        # exists, so after a crash only the last segment can have a torn tail or reserved space.
        self._seal()
        self._reserving = _fallocate is not None
        if chunk.create:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            self._fd = os.open(chunk.path, flags, FILE_MODE)
            self._path = chunk.path
            self._created = True
            self._file_size = 0
        else:
            self._fd = os.open(chunk.path, os.O_WRONLY)
            self._path = chunk.path
            self._file_size = os.fstat(self._fd).st_size
        self._end = chunk.offset

    def _seal(self) -> None:
        """Trim the active segment to its last frame, sync it and close it."""
        if self._fd is None:
            return
        if self._file_size > self._end:
            os.ftruncate(self._fd, self._end)
            self._file_size = self._end
            os.fsync(self._fd)  # a full fsync: the data and the file's new size
            if self._created and self._path is not None:
                fsync_dir(self._path.parent)
            self._created = False
        else:
            self.sync()
        os.close(self._fd)
        self._fd, self._path = None, None

    def close(self) -> None:
        """Trim, sync and close the active segment."""
        self._seal()
        self._created = False

    def abandon(self) -> None:
        """Close without trimming or syncing, as a crash would leave things."""
        if self._fd is not None:
            # The descriptor is gone either way, and nothing unsynced was promised.
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._path, self._created = None, None, False
