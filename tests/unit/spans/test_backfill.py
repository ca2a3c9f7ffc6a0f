"""Backfill's file opening: plain files as they are, gzip found by its magic and inflated."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from agent.spans.backfill import open_plain, oversize_dir_for
from agent.spans.tail.linereader import LineReader


def read_all(path: Path, scratch: Path, max_line_bytes: int = 10) -> tuple[list[bytes], list[int]]:
    plain = open_plain(path, scratch)
    reader = LineReader(
        plain.fd, str(path), 0, max_line_bytes=max_line_bytes, oversize_dir=scratch / "spill"
    )
    lines: list[bytes] = []
    oversize: list[int] = []
    try:
        while True:
            result = reader.read_final(100, 64)
            lines += result.all_lines()
            oversize += [line.length for line in result.oversize]
            if result.final:
                return lines, oversize
    finally:
        reader.close()


def test_plain_and_gzip_files_read_the_same_lines_with_the_readers_rules(tmp_path: Path) -> None:
    data = b"a\r\n" + b"x" * 50 + b"\nb\nc"  # CRLF, an over-long line, no final newline
    plain = tmp_path / "a.log"
    plain.write_bytes(data)
    zipped = tmp_path / "b.log"  # no .gz: the magic decides
    zipped.write_bytes(gzip.compress(data))
    assert read_all(plain, tmp_path) == ([b"a", b"b", b"c"], [50])
    assert read_all(zipped, tmp_path) == ([b"a", b"b", b"c"], [50])
    assert not [name for name in os.listdir(tmp_path) if name.startswith("tmp")], (
        "the inflated copy is an unlinked temporary file"
    )


def test_progress_ratio_and_spill_names(tmp_path: Path) -> None:
    data = b"line\n" * 10_000
    zipped = tmp_path / "c.gz"
    zipped.write_bytes(gzip.compress(data))
    opened = open_plain(zipped, tmp_path)
    os.close(opened.fd)
    assert opened.stored_per_plain == zipped.stat().st_size / len(data)
    assert opened.spill_stem == f"ship-{zipped.stat().st_dev}-{zipped.stat().st_ino}"
    assert oversize_dir_for(tmp_path / "ship-spans.jsonl") == tmp_path / "ship-spans-oversize"
