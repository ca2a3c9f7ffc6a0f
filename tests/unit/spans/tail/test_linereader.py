"""LineReader on real files: complete lines only, bad input never stalls, memory stays bounded."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

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
        merged.lines += result.all_lines()
        merged.oversize += result.oversize
        merged.end_offset = result.end_offset
        if result.at_eof:
            return merged
    raise AssertionError("reader never reached the end of the file")


def test_partial_last_line_is_held_until_its_newline(opened: LineReader, log_path: Path) -> None:
    append(log_path, b"one\ntw")
    first = read_all(opened)
    assert first.all_lines() == [b"one"]
    assert first.end_offset == 4  # the commit point stops before the unfinished line
    append(log_path, b"o\nthree\n")
    second = read_all(opened)
    assert second.all_lines() == [b"two", b"three"]
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
    assert result.all_lines() == [b"before", b"after"]
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
        lines += result.all_lines()
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
    assert first.all_lines() == [b"%d" % n for n in range(10)]
    assert not first.at_eof
    rest = read_all(opened)
    assert rest.all_lines() == [b"%d" % n for n in range(10, 25)]


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
    assert result.all_lines() == [b"a", b"no newline at the end"]
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
    assert result.all_lines() == [b"fresh"]
    assert result.oversize == []


PIECE_LINES = st.one_of(
    st.sampled_from([b"{", b"}", b"", b"   ", b'    "name": "GET /jobs",', b"INFO served"]),
    st.binary(max_size=40).map(lambda raw: raw.replace(b"\n", b"")),
    st.builds(lambda count, byte: byte * count, st.integers(0, 300), st.sampled_from(b"x{ ")).map(
        bytes
    ),
)


@st.composite
def log_file(draw: st.DrawFn) -> bytes:
    """Lines of every kind (short, long, blank, braces, binary), ended by a newline or by a
    carriage return and a newline; the last one perhaps not ended at all."""
    records = draw(st.lists(PIECE_LINES, max_size=40))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\n", b"\r\n"]), min_size=len(records)))
    data = b"".join(record + end for record, end in zip(records, ends, strict=False))
    return data + draw(st.sampled_from([b"", b"tail", b"x" * 90]))


def plain_reading(data: bytes, limit: int) -> tuple[list[bytes], list[tuple[int, int]]]:
    """The lines a reader hands on for a file read to its very end, and the (offset, length)
    of the records it spills instead: split on newlines, a trailing carriage return dropped,
    a record over `limit` (carriage return included) spilled."""
    lines: list[bytes] = []
    spilled: list[tuple[int, int]] = []
    offset = 0
    records = data.split(b"\n")
    if not records[-1]:
        records.pop()
    for record in records:
        if len(record) > limit:
            spilled.append((offset, len(record.removesuffix(b"\r"))))
        else:
            lines.append(record.removesuffix(b"\r"))
        offset += len(record) + 1
    return lines, spilled


def read_in_parts(
    path: Path, reader: LineReader, parts: list[bytes], reads: list[tuple[int, int]]
) -> list[ReadResult]:
    """Append each part and read until the end (with `read_final` after the last), each read
    with the next (max_lines, chunk bytes) of `reads`, in turn."""
    results: list[ReadResult] = []
    sizes = itertools.cycle(reads)
    for index, part in enumerate(parts):
        append(path, part)
        final = index == len(parts) - 1
        while True:
            result = (reader.read_final if final else reader.read)(*next(sizes))
            results.append(result)
            if result.final or (result.at_eof and not final):
                break
    return results


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.data(),
    log_file(),
    st.sampled_from([16, 64, 1 << 20]),
    st.lists(
        st.tuples(st.sampled_from([1, 3, 100, 16384]), st.sampled_from([7, 64, 300, 4096])),
        min_size=1,
        max_size=3,
    ),
)
def test_reads_in_blocks_or_lines_give_the_plain_reading_and_resume_anywhere(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    content: bytes,
    limit: int,
    reads: list[tuple[int, int]],
) -> None:
    """Whatever the chunk sizes, line limits and the file's growth (parts cut anywhere): the
    lines handed on, split or as blocks, are the plain reading of the file, a block's text
    is the file's bytes it covers (but for spilled records), a read holds no more than
    `max_lines` lines, and a reader started at any read's end offset (a checkpoint) reads
    exactly the rest."""
    scratch = tmp_path_factory.mktemp("blocks")
    path = scratch / "app.log"
    path.write_bytes(b"")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(content)), max_size=3)))
    parts = [content[a:b] for a, b in itertools.pairwise([0, *cuts, len(content)])]

    def reader_at(offset: int) -> LineReader:
        fd = os.open(path, os.O_RDONLY)
        return LineReader(fd, str(path), offset, max_line_bytes=limit, oversize_dir=scratch)

    reader = reader_at(0)
    try:
        results = read_in_parts(path, reader, parts, reads)
    finally:
        reader.close()
    start = 0
    for result, (max_lines, _) in zip(results, itertools.cycle(reads), strict=False):
        # (a final read adds the unterminated last record past max_lines)
        assert result.line_count == len(result.all_lines()) <= max_lines + result.final
        if result.block is not None:
            assert not result.lines
            if not result.oversize:  # else the spilled record's bytes are not among the lines'
                assert result.block.text == content[start : result.end_offset]
        start = result.end_offset
    lines, spilled = plain_reading(content, limit)
    assert [line for result in results for line in result.all_lines()] == lines
    assert [(s.start_offset, s.length) for r in results for s in r.oversize] == spilled
    assert results[-1].end_offset == len(content)

    at = data.draw(st.integers(0, len(results) - 1))
    checkpoint = results[at].end_offset
    resumed = reader_at(checkpoint)
    try:
        rest = read_in_parts(path, resumed, [b""], reads)
    finally:
        resumed.close()
    later = [line for result in results[at + 1 :] for line in result.all_lines()]
    assert [line for result in rest for line in result.all_lines()] == later
    event(f"blocks {min(sum(r.block is not None for r in results), 2)}")
