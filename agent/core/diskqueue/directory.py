"""The disk queue's directory: the owner lock, the segment listing and recovery on open.

Recovery trusts nothing it did not check. Every segment header is validated; the last segment,
the only one a crash can leave half-written, is read frame by frame. Damage followed by valid
frames (a flipped bit, not a crash) is copied to quarantine and cut out, so the records after it
survive; a torn or corrupt tail is cut at the last good frame. Both are counted and logged.
Zeros after the last frame are space the writer reserved ahead (``appender.py``): they are cut
without a copy or a count. An agent older than the reservation would take them for one torn
tail of the last segment, copy them to quarantine and count it, and lose nothing else.
Damage inside older segments is left for the reader, which skips it when it gets there, so
opening a large backlog stays fast.

Blocking I/O throughout: the queue runs :func:`recover` in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.atomicfile import FILE_MODE, load_state, make_dirs
from agent.core.diskqueue.errors import QueueLockedError
from agent.core.diskqueue.segment import (
    HEADER_SIZE,
    SEGMENT_VERSION,
    CorruptSegmentError,
    Damage,
    ScanResult,
    cut_holes,
    parse_segment_name,
    quarantine_range,
    read_header,
    rewrite_header,
    scan_segment,
    truncate_file,
)

log = logging.getLogger(__name__)

LOCK_NAME = "LOCK"
STATE_NAME = "frontier.json"
STATE_VERSION = 1


@dataclass(slots=True)
class SegmentInfo:
    """What the queue knows about one segment file without holding it open."""

    first_seq: int
    path: Path
    size: int  # bytes reserved, including appends not yet written
    written: int  # bytes known to be in the file
    first_enqueued_ns: int
    header_ok: bool = True
    version: int = SEGMENT_VERSION  # frame format (see frames.py)
    synced: int = -1  # bytes known to be durable; readers stop here (-1: all of ``written``)

    def __post_init__(self) -> None:
        if self.synced < 0:
            self.synced = self.written


class SegmentTable:
    """The live segments in seq order and the write end: shared by the queue's writer (which
    appends and deletes) and reader (which follows), all in the event loop."""

    def __init__(self, segments: list[SegmentInfo], next_seq: int) -> None:
        self.segments = segments
        self.next_seq = next_seq
        self.disk_bytes = sum(segment.size for segment in segments)

    @property
    def active(self) -> SegmentInfo | None:
        """The segment appends go to (the last one)."""
        return self.segments[-1] if self.segments else None

    def after(self, segment: SegmentInfo) -> SegmentInfo | None:
        # By seq rather than by position: ``segment`` may have been deleted meanwhile.
        for candidate in self.segments:
            if candidate.first_seq > segment.first_seq:
                return candidate
        return None

    def containing(self, seq: int) -> SegmentInfo | None:
        found = None
        for segment in self.segments:
            if segment.first_seq > seq:
                break
            found = segment
        return found

    def count_fully_below(self, frontier: int) -> int:
        """How many leading segments hold only seqs below ``frontier``; never the active one."""
        return count_fully_below(self.segments, frontier)

    def drop_first(self, count: int) -> int:
        """Forget the first ``count`` segments (deleted on disk); returns the bytes freed."""
        freed = sum(segment.size for segment in self.segments[:count])
        del self.segments[:count]
        self.disk_bytes -= freed
        return freed


def count_fully_below(segments: list[SegmentInfo], frontier: int) -> int:
    """How many leading ``segments`` hold only seqs below ``frontier``; never the last one."""
    count = 0
    while count + 1 < len(segments) and segments[count + 1].first_seq <= frontier:
        count += 1
    return count


@dataclass(slots=True)
class Recovered:
    lock_fd: int
    segments: list[SegmentInfo]
    next_seq: int
    frontier: int
    done_ranges: list[tuple[int, int]] = field(default_factory=list)
    tail_truncations: int = 0
    tail_bytes_cut: int = 0


def lock_directory(directory: Path) -> int:
    """Take the exclusive owner lock; raises QueueLockedError naming the holder's pid."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise QueueLockedError(
            f"disk queue directory {directory} is locked by another process (pid {holder})"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def recover(directory: Path) -> Recovered:
    """Lock ``directory`` (creating it), validate segments, cut a torn tail, load the frontier."""
    make_dirs(directory)
    lock_fd = lock_directory(directory)
    try:
        return _recover_locked(directory, lock_fd)
    except BaseException:
        os.close(lock_fd)
        raise


def _recover_locked(directory: Path, lock_fd: int) -> Recovered:
    saved_frontier, saved_ranges = _load_acks(directory / STATE_NAME)
    listing = _list_segments(directory)
    recovered = Recovered(lock_fd, [], saved_frontier, saved_frontier)
    for first_seq, path in listing[:-1]:
        recovered.segments.append(_inspect_sealed(first_seq, path))
    if listing:
        _recover_last(recovered, *listing[-1])
    first = recovered.segments[0].first_seq if recovered.segments else saved_frontier
    recovered.frontier = min(max(saved_frontier, first), recovered.next_seq)
    # A range past a cut tail would mark seqs done that new appends are about to reuse.
    recovered.done_ranges = [
        (start, min(end, recovered.next_seq))
        for start, end in saved_ranges
        if start < recovered.next_seq
    ]
    _delete_acked(recovered)
    return recovered


def _load_acks(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """The persisted frontier and done ranges above it; nothing (all redelivered) if unusable."""
    state = load_state(path, STATE_VERSION)
    if state is None:
        return 0, []
    try:
        frontier = state["acked_frontier"]
        ranges = [(int(start), int(end)) for start, end in state.get("done_ranges", [])]
        if not isinstance(frontier, int) or any(end <= start for start, end in ranges):
            raise ValueError("bad frontier or range")
    except (KeyError, TypeError, ValueError) as error:
        log.error("state file %s has an unexpected shape (%s); redelivering all", path, error)
        return 0, []
    return frontier, ranges


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in os.scandir(directory):
        first_seq = parse_segment_name(entry.name)
        if first_seq is not None:
            found.append((first_seq, Path(entry.path)))
    return sorted(found)


def _inspect_sealed(first_seq: int, path: Path) -> SegmentInfo:
    try:
        header, size = read_header(path, first_seq)
    except CorruptSegmentError as error:
        size = path.stat().st_size
        log.error(
            "disk queue segment %s has a bad header (%s); its %d bytes will be skipped",
            path,
            error,
            size,
        )
        return SegmentInfo(first_seq, path, size, size, 0, header_ok=False)
    return SegmentInfo(
        first_seq, path, size, size, header.first_enqueued_ns, version=header.version
    )


def _recover_last(recovered: Recovered, first_seq: int, path: Path) -> None:
    scan = scan_segment(path, first_seq)
    if scan.header is None:
        _replace_bad_header(recovered, first_seq, path, scan)
        return
    if scan.corrupt is not None:  # first: the offsets are the file's as found
        _cut_tail(recovered, path, scan)
    elif scan.reserved and not scan.holes:  # cutting the holes drops it too
        _cut_reserved(path, scan)
    if scan.holes:
        _cut_holes(recovered, path, scan)
    size = scan.good_end - sum(hole.end - hole.start for hole in scan.holes)
    recovered.segments.append(
        SegmentInfo(
            first_seq,
            path,
            size,
            size,
            scan.header.first_enqueued_ns,
            version=scan.header.version,
        )
    )
    recovered.next_seq = scan.next_seq


def _replace_bad_header(recovered: Recovered, first_seq: int, path: Path, scan: ScanResult) -> None:
    if scan.file_size and not scan.data_end:
        # Created and reserved, but its header never reached the disk: nothing in it was synced.
        log.info("disk queue segment %s: no header, only reserved space; rewritten", path)
    else:
        if scan.data_end:
            quarantine_range(path, Damage(0, scan.data_end, scan.corrupt or "bad header"))
        recovered.tail_truncations += 1
        recovered.tail_bytes_cut += scan.data_end
        log.warning(
            "disk queue segment %s: %s; cut its %d bytes", path, scan.corrupt, scan.data_end
        )
    first_enqueued_ns = time.time_ns()
    rewrite_header(path, first_seq, first_enqueued_ns)
    info = SegmentInfo(first_seq, path, HEADER_SIZE, HEADER_SIZE, first_enqueued_ns)
    recovered.segments.append(info)
    recovered.next_seq = first_seq


def _cut_holes(recovered: Recovered, path: Path, scan: ScanResult) -> None:
    """Damage with valid frames after it: keep those frames, set the bad bytes aside."""
    for hole in scan.holes:
        quarantine_range(path, hole)
    cut_holes(path, scan.holes, scan.good_end)
    # Counted by the reader when it meets the seq jump (once per process, like every count).
    lost = scan.next_seq - (int(path.stem) + scan.frame_count)
    log.error(
        "disk queue segment %s: %d damaged ranges (%d bytes, %d records) cut out; "
        "the %d records after them are kept",
        path,
        len(scan.holes),
        sum(hole.end - hole.start for hole in scan.holes),
        lost,
        scan.frame_count,
    )


def _cut_reserved(path: Path, scan: ScanResult) -> None:
    truncate_file(path, scan.good_end)
    log.info("disk queue segment %s: %d bytes of reserved space cut", path, scan.reserved)


def _cut_tail(recovered: Recovered, path: Path, scan: ScanResult) -> None:
    cut = scan.data_end - scan.good_end  # the reserved space after it is no damage
    # A torn tail is what a crash leaves; damage there is indistinguishable, so keep a copy.
    quarantine_range(path, Damage(scan.good_end, scan.data_end, scan.corrupt or "bad tail"))
    truncate_file(path, scan.good_end)
    recovered.tail_truncations += 1
    recovered.tail_bytes_cut += cut
    log.warning(
        "disk queue segment %s: %s; cut %d bytes after %d good records",
        path,
        scan.corrupt,
        cut,
        scan.frame_count,
    )


def _delete_acked(recovered: Recovered) -> None:
    """Remove sealed segments whose every seq is below the frontier (the last one stays)."""
    doomed = count_fully_below(recovered.segments, recovered.frontier)
    for segment in recovered.segments[:doomed]:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
    del recovered.segments[:doomed]
