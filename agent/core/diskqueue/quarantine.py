"""Where damaged disk-queue bytes go: copied aside before the queue skips them.

A damaged frame cannot be delivered, but its bytes may still mean something to a person (a
payload with one flipped bit is mostly readable). Each damaged range becomes one file
``quarantine/<segment>-<offset>.bad`` next to the segments; the queue never reads it again, and
the operator deletes it. Damage is rare (a disk or memory fault), so these stay few.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.core.atomicfile import FILE_MODE, fsync_dir, make_dirs, write_all

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"


def quarantine(segment: Path, offset: int, data: bytes) -> Path | None:
    """Save ``data`` (found at ``offset`` of ``segment``); None if it could not be saved (the
    damage is logged either way: losing the copy must not stop the queue)."""
    directory = segment.parent / QUARANTINE_DIR
    path = directory / f"{segment.stem}-{offset:012d}.bad"
    try:
        make_dirs(directory)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            write_all(fd, [data])
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(directory)
    except OSError as error:
        log.error("disk queue: cannot quarantine %d bytes of %s: %s", len(data), segment, error)
        return None
    log.error("disk queue: %d damaged bytes of %s moved aside to %s", len(data), segment, path)
    return path
