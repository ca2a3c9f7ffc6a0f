"""On-disk format of disk-queue segment files, and the blocking I/O that reads and writes them.

A segment is one file named ``<first-seq:020d>.seg``::

    header  magic "SDQSEG" | format version u16 | first seq u64 | first enqueue time i64 (ns)
            | crc32 u32 of the header fields before it
    frame*  length u32 | enqueue time i64 (ns) | crc32 u32 | payload (length bytes)

All integers are little-endian. The CRC covers the length, the enqueue time and the payload, so
a damaged length or timestamp is caught as surely as a damaged payload. Record sequence numbers
are not stored: the n-th frame of a segment has seq ``first_seq + n``.

Everything here is synchronous; the queue calls it from its writer thread and worker threads.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from agent.core.atomicfile import fsync_dir, write_all

SEGMENT_MAGIC = b"SDQSEG"
SEGMENT_VERSION = 1
SEGMENT_SUFFIX = ".seg"

_HEADER_FIELDS = struct.Struct("<6sHQq")
_HEADER = struct.Struct("<6sHQqI")
_FRAME_PREFIX = struct.Struct("<Iq")  # the part of the frame head that the CRC covers
_FRAME_HEAD = struct.Struct("<IqI")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size
FRAME_OVERHEAD = _FRAME_HEAD.size
_NAME = re.compile(r"^(\d{20})\.seg$")
_sync_data = getattr(os, "fdatasync", os.fsync)


class CorruptSegmentError(Exception):
    """A segment header or frame failed validation."""


@dataclass(frozen=True, slots=True)
class Frame:
    enqueued_ns: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Frames read from ``offset`` onwards; ``next_offset`` follows the last good one.

    ``corrupt`` names the problem when reading stopped at a bad frame rather than at ``end``.
    """

    frames: list[Frame]
    next_offset: int
    corrupt: str | None


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of validating a whole segment: how many good frames and where they end."""

    frame_count: int
    good_end: int
    file_size: int
    corrupt: str | None


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def encode_header(first_seq: int, first_enqueued_ns: int) -> bytes:
    fields = _HEADER_FIELDS.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_seq, first_enqueued_ns)
    return fields + _CRC.pack(zlib.crc32(fields))


def decode_header(raw: bytes, expected_first_seq: int) -> int:
    """Validate a segment header and return the enqueue time of the segment's first record."""
    if len(raw) < HEADER_SIZE:
        raise CorruptSegmentError(f"short header ({len(raw)} of {HEADER_SIZE} bytes)")
    magic, version, first_seq, first_enqueued_ns, crc = _HEADER.unpack_from(raw)
    if magic != SEGMENT_MAGIC:
        raise CorruptSegmentError(f"bad magic {magic!r}")
    if version != SEGMENT_VERSION:
        raise CorruptSegmentError(f"unknown format version {version}")
    if zlib.crc32(raw[: _HEADER_FIELDS.size]) != crc:
        raise CorruptSegmentError("header checksum mismatch")
    if first_seq != expected_first_seq:
        raise CorruptSegmentError(f"header seq {first_seq} does not match file name")
    return int(first_enqueued_ns)


def encode_frame_head(payload: bytes, enqueued_ns: int) -> bytes:
    prefix = _FRAME_PREFIX.pack(len(payload), enqueued_ns)
    return prefix + _CRC.pack(zlib.crc32(payload, zlib.crc32(prefix)))


def _parse_frames(
    buf: bytes, collect: bool
) -> tuple[list[Frame], int, int, int | None, str | None]:
    """Walk the complete, valid frames at the start of ``buf``.

    Returns (frames, frame count, bytes consumed, bytes the next incomplete frame needs, error).
    Frames are only built when ``collect`` is set, so scans stay cheap.
    """
    view = memoryview(buf)
    frames: list[Frame] = []
    count = pos = 0
    size = len(buf)
    while size - pos >= FRAME_OVERHEAD:
        length, enqueued_ns, crc = _FRAME_HEAD.unpack_from(buf, pos)
        end = pos + FRAME_OVERHEAD + length
        if end > size:
            return frames, count, pos, end - pos, None
        actual = zlib.crc32(view[pos + FRAME_OVERHEAD : end], zlib.crc32(view[pos : pos + 12]))
        if actual != crc:
            return frames, count, pos, None, f"crc mismatch in frame at +{pos}"
        if collect:
            frames.append(Frame(enqueued_ns, buf[pos + FRAME_OVERHEAD : end]))
        count += 1
        pos = end
    needed = FRAME_OVERHEAD if pos < size else None
    return frames, count, pos, needed, None


def read_frames(fd: int, offset: int, end: int, chunk_bytes: int) -> ReadResult:
    """Read about ``chunk_bytes`` worth of whole frames between ``offset`` and ``end``.

    ``end`` must be a frame boundary of sound data (the written size of the segment), so a frame
    that runs past it is damage, not a partial read. A frame bigger than ``chunk_bytes`` is read
    in one go so that large records still make progress.
    """
    want = min(chunk_bytes, end - offset)
    while True:
        buf = os.pread(fd, want, offset)
        frames, _count, consumed, needed, error = _parse_frames(buf, collect=True)
        if error is not None or frames:
            return ReadResult(frames, offset + consumed, error)
        if len(buf) < want:
            return ReadResult([], offset, f"file ends at +{offset + len(buf)}, expected +{end}")
        if needed is None:
            return ReadResult([], offset, None)
        if offset + needed > end:
            return ReadResult([], offset, f"frame at +{offset} runs past the end (+{end})")
        want = needed


def scan_segment(path: Path, first_seq: int) -> tuple[int, ScanResult]:
    """Validate every frame of a segment; returns (first enqueue time, scan result).

    A bad header is reported as corruption at offset 0 with a zero enqueue time.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        file_size = os.fstat(fd).st_size
        try:
            first_enqueued_ns = decode_header(os.pread(fd, HEADER_SIZE, 0), first_seq)
        except CorruptSegmentError as error:
            return 0, ScanResult(0, 0, file_size, str(error))
        return first_enqueued_ns, _scan_frames(fd, file_size)
    finally:
        os.close(fd)


def _scan_frames(fd: int, file_size: int, chunk_bytes: int = 1 << 20) -> ScanResult:
    count, offset = 0, HEADER_SIZE
    while offset < file_size:
        want = min(chunk_bytes, file_size - offset)
        buf = os.pread(fd, want, offset)
        _frames, found, consumed, needed, error = _parse_frames(buf, collect=False)
        count, offset = count + found, offset + consumed
        if error is not None:
            return ScanResult(count, offset, file_size, error)
        if found == 0 and needed is not None:
            if offset + needed > file_size:
                return ScanResult(count, offset, file_size, f"torn frame at +{offset}")
            chunk_bytes = needed
    return ScanResult(count, offset, file_size, None)


def read_header(path: Path, first_seq: int) -> tuple[int, int]:
    """Return (first enqueue time, file size); raises CorruptSegmentError on a bad header."""
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


@dataclass(slots=True)
class PendingWrite:
    """Bytes bound for one segment file; ``header`` is set when the file must be created."""

    path: Path
    header: bytes | None
    parts: list[bytes]


class SegmentWriter:
    """Appends to the active segment file. Used only from the queue's writer thread."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._path: Path | None = None
        self._created = False  # a segment was created since the last sync: fsync the directory

    def write(self, pending: list[PendingWrite]) -> None:
        """Write every pending chunk (to the page cache: ``sync`` makes it durable)."""
        for chunk in pending:
            if chunk.path != self._path:
                self._switch_to(chunk.path, chunk.header)
            assert self._fd is not None
            write_all(self._fd, chunk.parts)

    def sync(self) -> None:
        """Make everything written so far durable: one data sync (and the directory's entry of
        a segment created since the last one)."""
        if self._fd is not None:
            _sync_data(self._fd)
        if self._created and self._path is not None:
            fsync_dir(self._path.parent)
        self._created = False

    def _switch_to(self, path: Path, header: bytes | None) -> None:
        # The previous segment is synced before the next exists, so after a crash only the
        # last segment can have a torn tail.
        if self._fd is not None:
            _sync_data(self._fd)
            os.close(self._fd)
            self._fd = None
        if header is None:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
            write_all(self._fd, [header])
            self._created = True
        self._path = path

    def close(self) -> None:
        """Sync and close the active segment."""
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None

    def abandon(self) -> None:
        """Close without syncing, as a crash would leave things."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None


class SegmentReader:
    """Keeps one segment open for reading; calls come from worker threads, one at a time."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._path: Path | None = None

    def read(self, path: Path, offset: int, end: int, chunk_bytes: int) -> ReadResult:
        if path != self._path:
            self.close()
            self._fd = os.open(path, os.O_RDONLY)
            self._path = path
        assert self._fd is not None
        return read_frames(self._fd, offset, end, chunk_bytes)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._path = None, None
