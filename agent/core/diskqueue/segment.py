"""Disk-queue segment files: the header, and the blocking I/O that reads, scans and writes them.

A segment is one file named ``<first-seq:020d>.seg``::

    header  magic "SDQSEG" | format version u16 | first seq u64 | first enqueue time i64 (ns)
            | crc32 u32 of the header fields before it
    frame*  see ``frames.py`` (the header's version says which frame format follows)
    zeros   space reserved ahead of the frames in the active segment (``appender.py``)

A file's size therefore says nothing of how much it holds: the frames end where the first frame
fails to parse and the rest of the file is zeros. An all-zero tail is reserved space, not
damage: it is neither quarantined nor counted. A torn frame followed by zeros is a torn tail, cut
as before (the copy kept in quarantine ends at its last non-zero byte). Sealed segments are
trimmed to their last frame, so only the last segment can hold reserved space.

Everything here is synchronous; the queue calls it from its writer thread and worker threads.
Damage found while reading or scanning is copied aside into ``quarantine/`` before it is
skipped, so an operator can look at what was lost.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.atomicfile import FILE_MODE, fsync_dir, write_all
from agent.core.diskqueue.frames import Frame, Parsed, parse_frames, resync
from agent.core.diskqueue.quarantine import quarantine

SEGMENT_MAGIC = b"SDQSEG"
SEGMENT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SEGMENT_SUFFIX = ".seg"

_HEADER_FIELDS = struct.Struct("<6sHQq")
_HEADER = struct.Struct("<6sHQqI")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
_NAME = re.compile(r"^(\d{20})\.seg$")


class CorruptSegmentError(Exception):
    """A segment header failed validation."""


@dataclass(frozen=True, slots=True)
class Header:
    first_enqueued_ns: int
    version: int


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes ``[start, end)`` of a segment that hold no readable frame (copied to quarantine)."""

    start: int
    end: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Frames read from ``offset`` onwards; ``next_offset`` follows the last one consumed.

    ``damage`` is set when reading met a bad frame: reading goes on at ``damage.end`` (the next
    valid frame, or ``end`` when none was found).
    """

    frames: list[Frame]
    next_offset: int
    damage: Damage | None = None


@dataclass(slots=True)
class ScanResult:
    """Outcome of validating a whole segment: its good frames, the holes between them (damage
    followed by valid frames) and where the last good frame ends."""

    header: Header | None
    frame_count: int = 0
    next_seq: int = 0
    good_end: int = 0
    file_size: int = 0
    data_end: int = 0  # past it, the file is zero-filled reserved space up to ``file_size``
    holes: list[Damage] = field(default_factory=list)
    corrupt: str | None = None  # why the tail after ``good_end`` is bad

    @property
    def reserved(self) -> int:
        """Bytes of zero-filled reserved space at the end of the file."""
        return self.file_size - self.data_end


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def encode_header(first_seq: int, first_enqueued_ns: int) -> bytes:
    fields = _HEADER_FIELDS.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_seq, first_enqueued_ns)
    return fields + _CRC.pack(zlib.crc32(fields))


def decode_header(raw: bytes, expected_first_seq: int) -> Header:
    """Validate a segment header."""
    if len(raw) < HEADER_SIZE:
        raise CorruptSegmentError(f"short header ({len(raw)} of {HEADER_SIZE} bytes)")
    magic, version, first_seq, first_enqueued_ns, crc = _HEADER.unpack_from(raw)
    if magic != SEGMENT_MAGIC:
        raise CorruptSegmentError(f"bad magic {magic!r}")
    if zlib.crc32(raw[: _HEADER_FIELDS.size]) != crc:
        raise CorruptSegmentError("header checksum mismatch")
    if version not in READABLE_VERSIONS:
        raise CorruptSegmentError(f"unknown format version {version}")
    if first_seq != expected_first_seq:
        raise CorruptSegmentError(f"header seq {first_seq} does not match file name")
    return Header(int(first_enqueued_ns), int(version))


@dataclass(frozen=True, slots=True)
class ReadAt:
    """Where a read starts (``offset``, the seq expected there) and the end of synced data."""

    offset: int
    end: int
    version: int
    next_seq: int


def read_frames(fd: int, at: ReadAt, chunk_bytes: int) -> tuple[ReadResult, bytes]:
    """Read about ``chunk_bytes`` worth of whole frames between ``offset`` and ``end``.

    ``end`` must be a frame boundary of synced data, so a frame that runs past it is damage,
    not a partial read. A frame bigger than ``chunk_bytes`` is read in one go so that large
    records still make progress. Returns the result and the damaged bytes (if any).
    """
    offset, end = at.offset, at.end
    want = min(chunk_bytes, end - offset)
    while True:
        buf = os.pread(fd, want, offset)
        parsed = parse_frames(buf, at.version, at.next_seq)
        if parsed.error is not None:
            return _resync_after(fd, offset + parsed.consumed, at, parsed)
        if parsed.frames:
            return ReadResult(parsed.frames, offset + parsed.consumed), b""
        if len(buf) < want:
            reason = f"file ends at +{offset + len(buf)}, expected +{end}"
            return _skip_rest(fd, offset, end, reason, parsed.frames)
        if parsed.needed is None:
            return ReadResult([], offset), b""
        if offset + parsed.needed > end:
            # A damaged length field makes a frame look longer than the file.
            runs_past = Parsed([], 0, 0, None, f"frame at +{offset} runs past +{end}")
            return _resync_after(fd, offset, at, runs_past)
        want = parsed.needed


def _resync_after(fd: int, bad: int, at: ReadAt, parsed: Parsed) -> tuple[ReadResult, bytes]:
    if parsed.frames:
        # Hand out the good frames first; the next read starts at the damage.
        return ReadResult(parsed.frames, bad), b""
    rest = os.pread(fd, at.end - bad, bad)  # bounded by the segment size
    found = resync(rest, at.next_seq) if at.version > 1 else None
    stop = bad + (found if found is not None else len(rest))
    reason = parsed.error or "bad frame"
    return ReadResult([], stop, Damage(bad, stop, reason)), rest[: stop - bad]


def _skip_rest(
    fd: int, offset: int, end: int, reason: str, frames: list[Frame]
) -> tuple[ReadResult, bytes]:
    rest = os.pread(fd, max(0, end - offset), offset)
    return ReadResult(frames, end, Damage(offset, end, reason)), rest


def scan_segment(path: Path, first_seq: int) -> ScanResult:
    """Validate every frame of a segment, skipping damage to the next valid frame (v2).

    A bad header is reported as corruption at offset 0 with ``header`` None.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        try:
            header = decode_header(os.pread(fd, HEADER_SIZE, 0), first_seq)
        except CorruptSegmentError as error:
            # A crash right after a new segment's reservation leaves it all zeros: no header.
            data_end = _data_end(os.pread(fd, file_size, 0))
            return ScanResult(None, file_size=file_size, data_end=data_end, corrupt=str(error))
        result = ScanResult(
            header,
            next_seq=first_seq,
            good_end=HEADER_SIZE,
            file_size=file_size,
            data_end=file_size,
        )
        _scan_frames(fd, result)
        return result
    finally:
        os.close(fd)


def _scan_frames(fd: int, result: ScanResult, chunk_bytes: int = 1 << 20) -> None:
    assert result.header is not None
    version, offset, size = result.header.version, result.good_end, result.file_size
    while offset < size:
        buf = os.pread(fd, min(chunk_bytes, size - offset), offset)
        parsed = parse_frames(buf, version, result.next_seq, collect=True)
        if parsed.frames:
            result.next_seq = parsed.frames[-1].seq + 1
        result.frame_count += parsed.count
        offset += parsed.consumed
        result.good_end = offset
        error = parsed.error
        if error is None and parsed.count == 0 and parsed.needed is not None:
            if offset + parsed.needed <= size:
                chunk_bytes = parsed.needed
                continue
            error = f"torn frame at +{offset}"  # or a damaged length field: look further
        if error is not None:
            rest = os.pread(fd, size - offset, offset)
            result.data_end = offset + _data_end(rest)
            if result.data_end == offset:
                return  # nothing but reserved space after the last frame
            found = resync(rest, result.next_seq) if version > 1 else None
            if found is None:
                result.corrupt = error
                return
            result.data_end = size
            result.holes.append(Damage(offset, offset + found, error))
            offset += found


def _data_end(data: bytes) -> int:
    """Length of ``data`` without its trailing zeros."""
    return len(data.rstrip(b"\0"))


def read_header(path: Path, first_seq: int) -> tuple[Header, int]:
    """Return (header, file size); raises CorruptSegmentError on a bad header."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return decode_header(os.pread(fd, HEADER_SIZE, 0), first_seq), os.fstat(fd).st_size
    finally:
        os.close(fd)


def truncate_file(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_header(path: Path, first_seq: int, first_enqueued_ns: int) -> None:
    """Replace a damaged header of an otherwise empty last segment."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        write_all(fd, [encode_header(first_seq, first_enqueued_ns)])
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_holes(path: Path, holes: list[Damage], keep_until: int) -> None:
    """Rewrite a segment without ``holes`` and without anything past ``keep_until``: the active
    segment must be clean where appends continue. Temp file, fsync, rename, directory fsync."""
    temp = path.with_name(f".{path.name}.resync")
    source = os.open(path, os.O_RDONLY)
    try:
        target = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            start = 0
            for hole in holes:
                _copy(source, target, start, hole.start)
                start = hole.end
            _copy(source, target, start, keep_until)
            os.fsync(target)
        finally:
            os.close(target)
    finally:
        os.close(source)
    os.replace(temp, path)
    fsync_dir(path.parent)


def _copy(source: int, target: int, start: int, end: int, chunk: int = 1 << 20) -> None:
    while start < end:
        data = os.pread(source, min(chunk, end - start), start)
        if not data:
            return
        write_all(target, [data])
        start += len(data)


def quarantine_range(path: Path, damage: Damage) -> None:
    """Copy a damaged byte range of ``path`` into the quarantine directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, damage.end - damage.start, damage.start)
    finally:
        os.close(fd)
    quarantine(path, damage.start, data)


class SegmentReader:
    """Keeps one segment open for reading; calls come from worker threads, one at a time."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._path: Path | None = None

    def read(self, path: Path, at: ReadAt, chunk_bytes: int) -> ReadResult:
        """Read frames; damaged bytes are copied to quarantine before they are skipped."""
        if path != self._path:
            self.close()
            self._fd = os.open(path, os.O_RDONLY)
            self._path = path
        assert self._fd is not None
        result, damaged = read_frames(self._fd, at, chunk_bytes)
        if result.damage is not None and damaged:
            quarantine(path, result.damage.start, damaged)
        return result

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None
