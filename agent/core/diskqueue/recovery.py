"""How the disk queue gets back on its feet after a failed write or sync.

An I/O error (ENOSPC, EIO, EMFILE, EFBIG...) leaves the active segment in an unknown state:
part of the failed write may be on disk, and after a failed fsync the page cache may not match
the file. Nothing after the last successful sync was promised to anyone, so recovery cuts the
files back to exactly that point: segments created since are deleted, the active one is
truncated to its synced size, fsync'd, and its frames are checked again. If the resource is
still missing (the disk still full, no file descriptor free) the attempt fails and is retried
with backoff; the queue refuses puts meanwhile (503 at the HTTP edge) and recovers by itself.

:func:`plan_rollback` runs in the event loop (it owns the segment table); :meth:`Rollback.apply`
runs in the writer thread (it does the I/O).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.atomicfile import fsync_dir
from agent.core.diskqueue.directory import SegmentTable
from agent.core.diskqueue.segment import HEADER_SIZE, scan_segment

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveryBackoff:
    """Delay before each recovery attempt: doubles while writes keep failing, so a disk that
    stays full costs a few attempts a minute, not a busy loop; a successful sync resets it."""

    initial: float = 0.05
    maximum: float = 5.0
    _failures: int = 0

    def next_delay(self) -> float:
        delay: float = min(self.maximum, self.initial * 2.0**self._failures)
        self._failures = min(self._failures + 1, 32)
        return delay

    def succeeded(self) -> None:
        self._failures = 0


@dataclass(frozen=True, slots=True)
class Rollback:
    """Files to cut back to their last synced state."""

    directory: Path
    delete: list[Path] = field(default_factory=list)
    truncate: Path | None = None
    truncate_to: int = 0
    first_seq: int = 0  # of the truncated segment
    expected_next_seq: int = 0  # what its frames must reach after the cut

    def apply(self) -> None:
        for path in self.delete:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self.truncate is not None:
            fd = os.open(self.truncate, os.O_WRONLY)
            try:
                os.ftruncate(fd, self.truncate_to)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.directory)
        self._verify()

    def _verify(self) -> None:
        if self.truncate is None:
            return
        scan = scan_segment(self.truncate, self.first_seq)
        if scan.corrupt is not None or scan.holes or scan.next_seq != self.expected_next_seq:
            # Synced bytes read back wrong: the reader will skip the damage when it gets there
            # (it is counted then); appends can go on after it.
            log.error(
                "disk queue segment %s: synced records do not read back intact after a write "
                "error (%s; frames reach seq %d, expected %d)",
                self.truncate,
                scan.corrupt or "holes",
                scan.next_seq,
                self.expected_next_seq,
            )


def plan_rollback(directory: Path, table: SegmentTable, durable_next_seq: int) -> Rollback:
    """Forget, in ``table``, everything not synced; returns what to undo on disk."""
    kept = [segment for segment in table.segments if segment.synced >= HEADER_SIZE]
    dropped = [segment.path for segment in table.segments if segment.synced < HEADER_SIZE]
    for segment in kept:
        segment.size = segment.written = segment.synced
    table.segments[:] = kept
    table.next_seq = durable_next_seq
    table.disk_bytes = sum(segment.size for segment in kept)
    active = table.active
    if active is None:
        return Rollback(directory, dropped)
    return Rollback(
        directory,
        dropped,
        active.path,
        active.synced,
        active.first_seq,
        durable_next_seq,
    )
