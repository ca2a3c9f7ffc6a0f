"""Complete lines from one open file, read in bounded chunks, with no buffer kept between reads.

The reader holds only positions: ``offset`` (start of the first record not yet returned, the
commit point) and ``scanned`` (bytes in ``[offset, scanned)`` are known to hold no newline). A
partial last line is not kept in memory: it is read again, with what follows, once the file has
grown. So a thousand idle files cost no memory, and a restart from ``offset`` re-reads exactly
the unfinished record.

A record longer than ``max_line_bytes`` is copied, chunk by chunk, to a spill file and reported
as an :class:`OversizeLine`; memory stays at about one chunk plus one line whatever its length,
and the lines after it keep flowing. Records are split on ``\\n``; a trailing ``\\r`` is dropped.
All methods block on file I/O: the tailer calls them from a worker thread, one at a time.

A chunk of short lines (a newline every ``SHORT_LINE_BYTES`` or more often in its first
``SAMPLE_BYTES``: a pretty-printed object's) that need no change (no carriage return, and the
chunk too short to hold a line over the limit: every chunk, with the default limits) is not
split: its complete lines are handed on as one ``LineBlock``, the bytes as read (with those of
the read's next chunks, when they are alike). A decoder can then read a run of them as one
text (a pretty-printed object, agent.spans.decode.pretty), and no object is made for each
line, which for short lines is most of what splitting costs. Longer lines are split as
before: one object a line is little beside what each line's decoding costs, and the decoder
would only split the block again. The block's lines are the ones splitting would give, and a
read holds either a block or split lines: a chunk to be split after a block is left to the
next read. A block holds at most ``max_lines`` lines: a chunk that would take it past
is left to the next read (or split, as before, when it is the read's first).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from agent.core.atomicfile import fsync_dir
from agent.spans.linescan import count_lines
from agent.spans.types import HeldLines, LineBlock

# One read call consumes at most this many chunks, so a huge oversize record is copied over
# several calls instead of holding the reading thread (and the caller) for seconds.
MAX_CHUNKS_PER_CALL = 16
# A chunk is handed on unsplit when its first SAMPLE_BYTES hold a newline every
# SHORT_LINE_BYTES or more often (pretty-printed SDK output: ~26 bytes a line).
SAMPLE_BYTES = 4096
SHORT_LINE_BYTES = 64


@dataclass(frozen=True, slots=True)
class OversizeLine:
    path: str
    """The file it came from."""
    start_offset: int
    length: int
    """Bytes of the record, without its newline (and without a trailing carriage return)."""
    spill_path: str
    """The record, copied while reading; fsync'd before it is reported."""
    spilled_bytes: int = -1
    """Bytes of the record in the spill file: all of them (``length``) unless the record was
    longer than ``max_spill_bytes``, whose first bytes alone are kept."""

    @property
    def whole(self) -> bool:
        return self.spilled_bytes >= self.length


@dataclass(slots=True)
class ReadResult(HeldLines):
    lines: list[bytes] = field(default_factory=list)
    """Complete lines, newline (and a trailing carriage return) removed; empty when `block`
    holds the read's lines."""
    block: LineBlock | None = None
    """The read's complete lines unsplit, when none needed a change (module docstring)."""
    oversize: list[OversizeLine] = field(default_factory=list)
    end_offset: int = 0
    consumed_bytes: int = 0
    at_eof: bool = False
    """Everything up to the file's current size has been looked at."""
    truncated: bool = False
    """The file shrank below what was read: reading restarted at 0 (copytruncate)."""
    final: bool = False
    """The file was read to its very end, unterminated last record included (read_final)."""
    lost_partial_bytes: int = 0
    """Bytes of an unfinished line that were truncated away before its newline was written."""
    file_size: int = 0

    def unblock(self) -> None:
        """Hold the block's lines as split lines, so that more can be appended."""
        if self.block is not None:
            self.lines, self.block = self.block.lines(), None


@dataclass(slots=True)
class _Spill:
    """Where the bytes of an over-long record go while it is read; ``file`` None discards them
    (the line fragment skipped when starting at the end of a file)."""

    start: int
    pos: int
    file: BinaryIO | None
    path: str = ""
    last_byte: bytes = b""
    cut: bool = False
    """The record outgrew max_spill_bytes: the rest of it was not written."""


class LineReader:
    def __init__(
        self,
        fd: int,
        path: str,
        offset: int,
        *,
        max_line_bytes: int,
        oversize_dir: Path,
        max_spill_bytes: int = 256 * 1024**2,
        skip_first_fragment: bool = False,
    ) -> None:
        self.fd = fd
        self.path = path
        self.offset = offset
        self.scanned = offset
        self.max_line_bytes = max_line_bytes
        self.oversize_dir = oversize_dir
        # A newline-free stream would otherwise fill the disk before the record ends.
        self.max_spill_bytes = max_spill_bytes
        # Files only grow; a size below the largest seen (or below a checkpoint) is truncation.
        self.high_water = offset
        self.size = offset
        self.spill_stem = "oversize"
        """Names this file's spill files; the tailer sets it from the file's identity."""
        self._spill: _Spill | None = None
        if skip_first_fragment:
            self._spill = _Spill(start=offset, pos=offset, file=None)

    def stat_size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, max_lines: int, chunk_bytes: int) -> ReadResult:
        size = self.stat_size()
        if size < self.high_water:
            return self.restart(size)
        self.high_water = self.size = size
        result = ReadResult()
        start_offset = self.offset
        for _ in range(MAX_CHUNKS_PER_CALL):
            if self._spill is not None:
                more = self._read_spill_chunk(chunk_bytes, result)
            else:
                more = self._read_line_chunk(max_lines, chunk_bytes, result)
            if not more or len(result.lines) >= max_lines:
                break
            held = result.lines or result.block is not None or result.oversize
            if held and self.offset - start_offset >= chunk_bytes:
                break
        result.end_offset = self.offset
        result.consumed_bytes = self.offset - start_offset
        result.at_eof = self._position() >= size
        result.file_size = size
        return result

    def read_final(self, max_lines: int, chunk_bytes: int) -> ReadResult:
        """Like ``read``, for a file that is not expected to grow any more (rotated away and
        quiet): once its end is reached, the unterminated last record is returned as a line too
        and ``final`` is set. If the file is found growing, nothing is finalised."""
        result = self.read(max_lines, chunk_bytes)
        if result.truncated or not result.at_eof:
            return result
        if self.stat_size() != result.file_size:
            result.at_eof = False
            return result
        spill, self._spill = self._spill, None
        if spill is not None:
            if spill.file is not None:
                result.oversize.append(self._finish_spill(spill))
            self.offset = self.scanned = spill.pos
        elif self.scanned > self.offset:
            fragment = os.pread(self.fd, self.scanned - self.offset, self.offset)
            self._add_records([fragment], result)
            self.offset = self.scanned
        result.consumed_bytes += self.offset - result.end_offset
        result.end_offset = self.offset
        result.final = True
        return result

    def close(self) -> None:
        self._abandon_spill()
        self.close_descriptor()

    @property
    def spilling(self) -> bool:
        """An over-long record is being copied: its spill file is open too."""
        return self._spill is not None

    def close_descriptor(self) -> None:
        """Let go of the file's descriptor but keep every position: ``fd`` is -1 until a
        caller opens the same file again and sets it (see TrackedFile.reopen)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _position(self) -> int:
        return self._spill.pos if self._spill is not None else self.scanned

    def restart(self, size: int | None = None) -> ReadResult:
        """Read again from 0: the content was truncated or replaced in place."""
        if size is None:
            size = self.stat_size()
        lost = self._position() - self.offset
        self._abandon_spill()
        self.offset = self.scanned = 0
        self.high_water = self.size = size
        return ReadResult(
            end_offset=0, truncated=True, lost_partial_bytes=lost, file_size=size, at_eof=False
        )

    def _read_line_chunk(self, max_lines: int, chunk_bytes: int, result: ReadResult) -> bool:
        """Read on from ``offset``; returns False at end of file."""
        known = self.scanned - self.offset
        buf = os.pread(self.fd, known + chunk_bytes, self.offset)
        if len(buf) <= known:
            return False
        last_newline = buf.rfind(b"\n", known)
        if last_newline < 0:
            self.scanned = self.offset + len(buf)
            if len(buf) > self.max_line_bytes:
                self._start_spill(buf)
            return True
        if not result.lines and self._unsplit(buf, known):
            consumed = last_newline + 1
            count = count_lines(buf, known, consumed)  # none before `known`: scanned
            held = result.block
            if held is None and count <= max_lines:
                result.block = LineBlock(buf if consumed == len(buf) else buf[:consumed], count)
            elif held is not None and held.count + count <= max_lines:
                text = b"".join((held.text, memoryview(buf)[:consumed]))
                result.block = LineBlock(text, held.count + count)
            elif held is not None:
                return False  # the block is full: this chunk is read again by the next read
            if result.block is not held:
                self.scanned = self.offset + len(buf)
                self.offset += consumed
                return True
        if result.block is not None:
            return False  # lines to split after a block: they are left to the next read
        room = max_lines - len(result.lines)
        records = buf.split(b"\n")
        records.pop()  # what follows the last newline (no copy of buf[:last_newline] made)
        if len(records) > room:
            records = records[:room]
            consumed = sum(map(len, records)) + len(records)
            self.scanned = self.offset + consumed
        else:
            consumed = last_newline + 1
            self.scanned = self.offset + len(buf)
            if len(buf) - consumed > self.max_line_bytes:
                self._add_records(records, result)
                self.offset += consumed
                self._start_spill(buf[consumed:])
                return True
        self._add_records(records, result, buf)
        self.offset += consumed
        return True

    def _unsplit(self, buf: bytes, known: int) -> bool:
        """Whether the chunk's lines are handed on as a block (module docstring)."""
        if len(buf) > self.max_line_bytes or b"\r" in buf:
            return False
        sample = min(len(buf) - known, SAMPLE_BYTES)
        return count_lines(buf, known, known + sample) * SHORT_LINE_BYTES >= sample

    def _add_records(
        self, records: list[bytes], result: ReadResult, source: bytes | None = None
    ) -> None:
        """Append records starting at ``offset`` to result, spilling any that are too long.
        `source`, the buffer the records were split from, lets the usual checks run in C."""
        result.unblock()
        short = source is not None and len(source) <= self.max_line_bytes
        if not short and max(map(len, records), default=0) > self.max_line_bytes:
            self._add_with_oversize(records, result)
            return
        if (source is None or b"\r" in source) and any(r.endswith(b"\r") for r in records):
            records = [r[:-1] if r.endswith(b"\r") else r for r in records]
        result.lines.extend(records)

    def _add_with_oversize(self, records: list[bytes], result: ReadResult) -> None:
        position = self.offset
        for record in records:
            if len(record) > self.max_line_bytes:
                spill = self._open_spill(position)
                self._spill_write(spill, record)
                result.oversize.append(self._finish_spill(spill))
            else:
                result.lines.append(record[:-1] if record.endswith(b"\r") else record)
            position += len(record) + 1

    def _read_spill_chunk(self, chunk_bytes: int, result: ReadResult) -> bool:
        spill = self._spill
        assert spill is not None
        data = os.pread(self.fd, chunk_bytes, spill.pos)
        if not data:
            return False
        newline = data.find(b"\n")
        if newline < 0:
            self._spill_write(spill, data)
            return True
        self._spill_write(spill, data[:newline])
        if spill.file is not None:
            result.oversize.append(self._finish_spill(spill))
        self._spill = None
        self.offset = self.scanned = spill.pos + 1
        return True

    def _start_spill(self, head: bytes) -> None:
        spill = self._open_spill(self.offset)
        self._spill_write(spill, head)
        self._spill = spill
        self.scanned = spill.pos

    def _open_spill(self, start: int) -> _Spill:
        self.oversize_dir.mkdir(parents=True, exist_ok=True)
        # Named after the record's place in its file, so re-reading it after a crash overwrites
        # the same spill file instead of leaving a second copy.
        path = self.oversize_dir / f"{self.spill_stem}-{start}.line"
        return _Spill(start=start, pos=start, file=path.open("wb"), path=str(path))

    def _spill_write(self, spill: _Spill, data: bytes) -> None:
        if spill.file is not None and data:
            room = self.max_spill_bytes - (spill.pos - spill.start)
            if room >= len(data):
                spill.file.write(data)
            else:
                if room > 0:
                    spill.file.write(data[:room])
                spill.cut = True
            spill.last_byte = data[-1:]
        spill.pos += len(data)

    def _finish_spill(self, spill: _Spill) -> OversizeLine:
        assert spill.file is not None
        length = spill.pos - spill.start
        if spill.last_byte == b"\r":
            length -= 1
            if not spill.cut:
                spill.file.truncate(length)
        spilled = min(length, self.max_spill_bytes)
        spill.file.flush()
        os.fsync(spill.file.fileno())
        spill.file.close()
        fsync_dir(self.oversize_dir)  # the spill file's name must survive a crash too
        return OversizeLine(self.path, spill.start, length, spill.path, spilled)

    def _abandon_spill(self) -> None:
        spill, self._spill = self._spill, None
        if spill is None or spill.file is None:
            return
        spill.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spill.path)
