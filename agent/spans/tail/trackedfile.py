"""One followed file: its open reader, its identity and where it stands in rotation.

Opening decides where reading starts (:class:`StartPolicy`). Everything else here is plain
state that the tailer updates on the event loop; the blocking calls (``open_tracked``,
``settle``) run in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.spans.tail.discovery import find_by_inode
from agent.spans.tail.fileid import FileIdentity, read_fingerprint
from agent.spans.tail.linereader import LineReader, ReadResult

log = logging.getLogger("agent.spans.tail.tailer")


@dataclass(frozen=True, slots=True)
class StartPolicy:
    """Where reading of a newly opened file starts.

    A file with a checkpoint resumes at its offset. ``start_at: end`` applies only to the files
    present at the agent's very first start (no checkpoints at all): those are the history
    the user chose not to ship. Any other file without a checkpoint is read from the
    beginning, like Fluent Bit and Vector do for files appearing while they run: it was created
    or rotated into place since the last run, and skipping it would lose spans.
    """

    offsets: Mapping[str, int]
    start_at_end: bool
    max_line_bytes: int
    oversize_dir: Path
    follow_symlinks: bool = False
    max_spill_bytes: int = 256 * 1024**2

    def start(
        self, identity: FileIdentity | None, fd: int, size: int, *, at_startup: bool
    ) -> tuple[int, bool, bool]:
        """(offset, whether to skip the line fragment there, whether it is checkpointed)."""
        if identity is not None and identity.key in self.offsets:
            return self.offsets[identity.key], False, True
        if at_startup and self.start_at_end and size > 0:
            skip = os.pread(fd, 1, size - 1) != b"\n"
            return size, skip, False
        return 0, False, False


class TrackedFile:
    def __init__(
        self,
        reader: LineReader,
        dev: int,
        inode: int,
        *,
        identity: FileIdentity | None,
        checkpointed: bool,
        now: float,
    ) -> None:
        self.reader = reader
        self.dev = dev
        self.inode = inode
        self.identity = identity
        self.known = checkpointed
        """The pipeline has heard of this identity (from its checkpoint or from a batch)."""
        self.last_end = reader.offset if checkpointed else 0
        """The commit point last handed out (or checkpointed). A file started at its end
        differs from it at once, so an empty batch records that offset for the checkpoint."""
        self.retiring: FileIdentity | None = None
        """The identity before a truncation, until the new content's identity is known."""
        self.retiring_offset = 0
        self.gone_since: float | None = None
        """When the path stopped leading to this file (renamed away or deleted)."""
        self.drain_first = False
        """Rotated: read before other files until its end is reached once, so a service's
        lines come out in the order written across the rotation."""
        self.last_growth = now
        self.seen_size = reader.offset
        self.at_eof = False
        self.let_go_due = False
        self.queued = False
        self.closed = False
        if identity is not None:
            reader.spill_stem = spill_stem(identity)

    @property
    def path(self) -> str:
        return self.reader.path

    @property
    def pair(self) -> tuple[int, int]:
        return (self.dev, self.inode)

    @property
    def bytes_behind(self) -> int:
        return max(0, self.seen_size - self.reader.offset)

    def read_next(self, max_lines: int, chunk_bytes: int) -> ReadResult:
        """The next lines (blocking). A file whose first line changed under the same inode
        was truncated and rewritten (copytruncate) even if it has regrown past our offset:
        it is read again from 0. Checking costs one small read per batch, never for an idle
        file."""
        if self._content_replaced():
            return self.reader.restart()
        read = self.reader.read_final if self.let_go_due else self.reader.read
        return read(max_lines, chunk_bytes)

    def _content_replaced(self) -> bool:
        if self.identity is None or self.reader.offset == 0:
            return False
        # None (no complete first line) cannot be told apart here; a shrink below the offset
        # is caught by the reader itself.
        current = read_fingerprint(self.reader.fd)
        return current is not None and current != self.identity.fingerprint

    @property
    def parked(self) -> bool:
        """Closed to save a descriptor while idle; reopened by identity when read again."""
        return self.reader.fd < 0

    def reopen(self, flags: int) -> None:
        """Open a parked file again (blocking): the same device and inode at its path, or, if
        it was renamed meanwhile, in the same directory. Raises FileNotFoundError if it is
        nowhere to be found. A file rewritten under the same inode is caught by the
        fingerprint check of ``read_next`` and read again from 0, as when it stayed open."""
        fd = _open_if_same(self.path, self.pair, flags)
        if fd is None:
            directory = Path(self.path).parent
            moved = find_by_inode([directory], {self.pair}).get(self.pair)
            fd = None if moved is None else _open_if_same(moved, self.pair, flags)
            if fd is None or moved is None:
                raise FileNotFoundError(f"{self.path} (closed while idle) is gone")
            self.reader.path = moved
        self.reader.fd = fd

    def settle(self, *, final: bool = False) -> bool:
        """Compute the identity once the first line is complete (blocking); True when known."""
        if self.identity is None:
            fingerprint = read_fingerprint(self.reader.fd, final=final)
            if fingerprint is None:
                return False
            self.identity = FileIdentity(self.dev, self.inode, fingerprint)
            self.reader.spill_stem = spill_stem(self.identity)
        return True


def _open_if_same(path: str, pair: tuple[int, int], flags: int) -> int | None:
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if (info.st_dev, info.st_ino) != pair:
        os.close(fd)
        return None
    return fd


def open_flags(policy: StartPolicy) -> int:
    flags = os.O_RDONLY | os.O_CLOEXEC
    if not policy.follow_symlinks:
        flags |= os.O_NOFOLLOW  # a link put in place of the file since the scan is not read
    return flags


def spill_stem(identity: FileIdentity) -> str:
    return f"{identity.dev}-{identity.inode}-{identity.fingerprint}"


def open_tracked(
    path: str, policy: StartPolicy, *, at_startup: bool, now: float
) -> TrackedFile | None:
    """Open ``path`` for following; None if it vanished or cannot be opened (logged)."""
    try:
        fd = os.open(path, open_flags(policy))
    except FileNotFoundError:
        return None
    except OSError as error:
        level = logging.ERROR if error.errno in (errno.EMFILE, errno.ENFILE) else logging.WARNING
        log.log(level, "cannot open span log file", extra={"path": path, "error": repr(error)})
        return None
    try:
        info = os.fstat(fd)
        fingerprint = read_fingerprint(fd)
        identity = None
        if fingerprint is not None:
            identity = FileIdentity(info.st_dev, info.st_ino, fingerprint)
        offset, skip, checkpointed = policy.start(identity, fd, info.st_size, at_startup=at_startup)
    except OSError:
        os.close(fd)
        raise
    reader = LineReader(
        fd,
        path,
        offset,
        max_line_bytes=policy.max_line_bytes,
        oversize_dir=policy.oversize_dir,
        max_spill_bytes=policy.max_spill_bytes,
        skip_first_fragment=skip,
    )
    return TrackedFile(
        reader, info.st_dev, info.st_ino, identity=identity, checkpointed=checkpointed, now=now
    )


def open_rotated(
    path: str, identity: FileIdentity, policy: StartPolicy, now: float
) -> TrackedFile | None:
    """Open a checkpointed file found under a name no glob matches (rotated while stopped)."""
    tracked = open_tracked(path, policy, at_startup=True, now=now)
    if tracked is None:
        return None
    if tracked.identity != identity:
        tracked.reader.close()
        return None
    tracked.gone_since = now
    tracked.drain_first = True
    return tracked
