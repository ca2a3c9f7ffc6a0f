"""LineReader on real files: complete lines only, bad input never stalls, memory stays bounded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.spans.tail.linereader import LineReader, ReadResult


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    return path


@pytest.fixture
def opened(log_path: Path, tmp_path: Path) -> Iterator[LineReader]:
    fd = os.open(log_path, os.O_RDONLY)
    reader = LineReader(fd, str(log_path), 0, max_line_bytes=64, oversize_dir=tmp_path / "spill")
    yield reader
    reader.close()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def read_all(reader: LineReader, *, max_lines: int = 1000, chunk: int = 32) -> ReadResult:
    """Read until the end of the file, merging results as a caller would see them in order."""
    merged = ReadResult()
    for _ in range(10_000):
        result = reader.read(max_lines, chunk)
        merged.lines += result.lines
        merged.oversize += result.oversize
        merged.end_offset = result.end_offset
        if result.at_eof:
            return merged
    raise AssertionError("reader never reached the end of the file")


def test_partial_last_line_is_held_until_its_newline(opened: LineReader, log_path: Path) -> None:
    append(log_path, b"one\ntw")
    first = read_all(opened)
    assert first.lines == [b"one"]
    assert first.end_offset == 4  # the commit point stops before the unfinished line
    append(log_path, b"o\nthree\n")
    second = read_all(opened)
    assert second.lines == [b"two", b"three"]
    assert second.end_offset == log_path.stat().st_size


def test_crlf_loses_its_carriage_return_and_binary_lines_pass_through(
    opened: LineReader, log_path: Path
) -> None:
    garbage = bytes(range(256)).replace(b"\n", b"")[:60]
    append(log_path, b"a\r\n" + garbage + b"\n\r\n\nb\n")
    assert read_all(opened).lines == [b"a", garbage, b"", b"", b"b"]


def test_oversize_line_is_spilled_whole_and_the_file_keeps_flowing(
    opened: LineReader, log_path: Path
) -> None:
    huge = b"x" * 5000 + b"\r"
    append(log_path, b"before\n" + huge + b"\nafter\n")
    result = read_all(opened, chunk=256)
    assert result.lines == [b"before", b"after"]
    [oversize] = result.oversize
    assert oversize.start_offset == 7
    assert oversize.length == 5000
    assert Path(oversize.spill_path).read_bytes() == b"x" * 5000
    assert result.end_offset == log_path.stat().st_size


def test_five_mib_line_is_copied_in_chunks_not_read_whole(log_path: Path, tmp_path: Path) -> None:
    huge = os.urandom(5 * 1024 * 1024).replace(b"\n", b"n")
    append(log_path, huge + b"\nnext\n")
    fd = os.open(log_path, os.O_RDONLY)
    reader = LineReader(
        fd, str(log_path), 0, max_line_bytes=1024 * 1024, oversize_dir=tmp_path / "spill"
    )
    calls = 0
    lines: list[bytes] = []
    oversize = []
    while True:
        calls += 1
        result = reader.read(4096, 64 * 1024)
        lines += result.lines
        oversize += result.oversize
        if result.at_eof:
            break
    reader.close()
    assert lines == [b"next"]
    assert Path(oversize[0].spill_path).read_bytes() == huge
    # 16 chunks of 64 KiB per call: the 5 MiB record took several calls, none held it whole.
    assert calls >= 5


def test_max_lines_bounds_a_batch_and_the_rest_follows_in_order(
    opened: LineReader, log_path: Path
) -> None:
    append(log_path, b"".join(b"%d\n" % n for n in range(25)))
    first = opened.read(10, 1024)
    assert first.lines == [b"%d" % n for n in range(10)]
    assert not first.at_eof
    rest = read_all(opened)
    assert rest.lines == [b"%d" % n for n in range(10, 25)]


def test_shrinking_file_restarts_at_zero_and_reports_the_cut_partial(
    opened: LineReader, log_path: Path
) -> None:
    append(log_path, b"old line\nunfinished")
    read_all(opened)
    os.truncate(log_path, 0)
    append(log_path, b"new\n")
    result = opened.read(100, 1024)
    assert result.truncated
    assert result.lost_partial_bytes == len(b"unfinished")
    assert read_all(opened).lines == [b"new"]


def test_final_read_returns_the_unterminated_last_record(
    opened: LineReader, log_path: Path
) -> None:
    append(log_path, b"a\nno newline at the end")
    result = opened.read_final(100, 1024)
    assert result.final
    assert result.lines == [b"a", b"no newline at the end"]
    assert result.end_offset == log_path.stat().st_size


def test_skipped_first_fragment_is_consumed_without_a_line(log_path: Path, tmp_path: Path) -> None:
    append(log_path, b"old\nhalf a li")
    size = log_path.stat().st_size
    fd = os.open(log_path, os.O_RDONLY)
    reader = LineReader(
        fd, str(log_path), size, max_line_bytes=64, oversize_dir=tmp_path, skip_first_fragment=True
    )
    append(log_path, b"ne\nfresh\n")
    result = read_all(reader)
    reader.close()
    assert result.lines == [b"fresh"]
    assert result.oversize == []
