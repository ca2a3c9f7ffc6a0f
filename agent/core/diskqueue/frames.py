"""Record framing inside disk-queue segments, and how a reader finds its way past damage.

Two frame formats exist; the segment header's version says which one a file holds::

    v1  length u32 | enqueue time i64 (ns) | crc32 u32 | payload
    v2  sync marker "\\xb5SQF" | length u32 | seq u64 | enqueue time i64 (ns) | crc32 u32 | payload

All integers are little-endian. The CRC covers every field between the marker (v2) and itself,
plus the payload, so a damaged length, seq or timestamp is caught as surely as a damaged payload.

v1 frames carry no seq, so one bad frame hides where the next one starts and which seq it has:
everything after it in the segment is lost. v2 frames carry their seq and start with a sync
marker, so a reader that meets a bad frame searches forward for the next marker whose frame
checks out (:func:`resync`) and loses only the damaged records; the seq jump says how many.
New segments are written as v2; v1 segments left by an older agent are still read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

SYNC_MARKER = b"\xb5SQF"
_V1_PREFIX = struct.Struct("<Iq")  # what the v1 CRC covers before the payload
_V1_HEAD = struct.Struct("<IqI")
_V2_HEAD = struct.Struct("<4sIQqI")
# What the v2 CRC covers of the head: length, seq, enqueue time. Bounds, not a slice object:
# compiled with mypyc, indexing with a slice object is taken for an integer index.
_COVERED_FROM: Final = 4
_COVERED_TO: Final = 24
_CRC = struct.Struct("<I")
V1_OVERHEAD = _V1_HEAD.size
V2_OVERHEAD = _V2_HEAD.size
FRAME_OVERHEAD = V2_OVERHEAD  # what a frame written today costs beyond its payload


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    enqueued_ns: int
    payload: bytes

    @property
    def size(self) -> int:
        """Bytes the frame takes in a v2 segment."""
        return V2_OVERHEAD + len(self.payload)


@dataclass(frozen=True, slots=True)
class Parsed:
    """The complete, valid frames at the start of a buffer.

    ``consumed``: bytes they take. ``needed``: bytes the next, incomplete frame needs (None if
    the buffer ended on a frame boundary). ``error``: why parsing stopped at a bad frame.
    """

    frames: list[Frame]
    count: int
    consumed: int
    needed: int | None
    error: str | None


def encode_frame_head(payload: bytes, seq: int, enqueued_ns: int) -> bytes:
    head = _V2_HEAD.pack(SYNC_MARKER, len(payload), seq, enqueued_ns, 0)
    crc = zlib.crc32(payload, zlib.crc32(head[_COVERED_FROM:_COVERED_TO]))
    return head[:-4] + _CRC.pack(crc)


def frame_overhead(version: int) -> int:
    return V1_OVERHEAD if version == 1 else V2_OVERHEAD


def parse_frames(buf: bytes, version: int, next_seq: int, *, collect: bool = True) -> Parsed:
    """Walk the complete, valid frames at the start of ``buf``; the first has ``next_seq``
    (v1) or a seq at least that (v2). Frames are only built when ``collect`` is set."""
    if version == 1:
        return _parse_v1(buf, next_seq, collect)
    return _parse_v2(buf, next_seq, collect)


def _parse_v1(buf: bytes, next_seq: int, collect: bool) -> Parsed:
    view = memoryview(buf)
    frames: list[Frame] = []
    count = pos = 0
    size = len(buf)
    while size - pos >= V1_OVERHEAD:
        length, enqueued_ns, crc = _V1_HEAD.unpack_from(buf, pos)
        end = pos + V1_OVERHEAD + length
        if end > size:
            return Parsed(frames, count, pos, end - pos, None)
        actual = zlib.crc32(view[pos + V1_OVERHEAD : end], zlib.crc32(view[pos : pos + 12]))
        if actual != crc:
            return Parsed(frames, count, pos, None, f"crc mismatch in frame at +{pos}")
        if collect:
            frames.append(Frame(next_seq + count, enqueued_ns, buf[pos + V1_OVERHEAD : end]))
        count += 1
        pos = end
    return Parsed(frames, count, pos, V1_OVERHEAD if pos < size else None, None)


def _parse_v2(buf: bytes, next_seq: int, collect: bool) -> Parsed:
    view = memoryview(buf)
    frames: list[Frame] = []
    count = pos = 0
    size = len(buf)
    while size - pos >= V2_OVERHEAD:
        marker, length, seq, enqueued_ns, crc = _V2_HEAD.unpack_from(buf, pos)
        if marker != SYNC_MARKER:
            return Parsed(frames, count, pos, None, f"no frame marker at +{pos}")
        end = pos + V2_OVERHEAD + length
        if end > size:
            return Parsed(frames, count, pos, end - pos, None)
        head = view[pos : pos + V2_OVERHEAD]
        if (
            zlib.crc32(view[pos + V2_OVERHEAD : end], zlib.crc32(head[_COVERED_FROM:_COVERED_TO]))
            != crc
        ):
            return Parsed(frames, count, pos, None, f"crc mismatch in frame at +{pos}")
        if seq < next_seq:
            return Parsed(frames, count, pos, None, f"seq {seq} out of order at +{pos}")
        if collect:
            frames.append(Frame(seq, enqueued_ns, buf[pos + V2_OVERHEAD : end]))
        next_seq = seq + 1
        count += 1
        pos = end
    return Parsed(frames, count, pos, V2_OVERHEAD if pos < size else None, None)


def resync(buf: bytes, next_seq: int) -> int | None:
    """Offset in ``buf`` (which starts at a bad frame) of the next valid v2 frame whose seq is
    at least ``next_seq``, or None. A false match needs a marker and a CRC to agree by chance."""
    pos = buf.find(SYNC_MARKER, 1)
    while pos >= 0:
        parsed = _parse_v2(buf[pos : pos + V2_OVERHEAD + _length_at(buf, pos)], next_seq, False)
        if parsed.count == 1:
            return pos
        pos = buf.find(SYNC_MARKER, pos + 1)
    return None


def _length_at(buf: bytes, pos: int) -> int:
    if len(buf) - pos < V2_OVERHEAD:
        return 0
    length: int = _V2_HEAD.unpack_from(buf, pos)[1]
    return length
