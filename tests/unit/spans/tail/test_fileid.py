"""File identity: the fingerprint settles on the first line and stays put while a file grows."""

from __future__ import annotations

import os
from pathlib import Path

from agent.spans.tail.fileid import FINGERPRINT_BYTES, FileIdentity, parse_key, read_fingerprint


def fingerprint(path: Path, *, final: bool = False) -> str | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_fingerprint(fd, final=final)
    finally:
        os.close(fd)


def test_fingerprint_waits_for_the_first_newline_then_never_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b'{"ts": 1, "msg": "sta')
    assert fingerprint(path) is None
    assert fingerprint(path, final=True) is not None  # a file that will not grow: take it all
    with path.open("ab") as file:
        file.write(b'rt"}\n')
    settled = fingerprint(path)
    with path.open("ab") as file:
        file.write(b"more\n" * 1000)
    assert settled is not None
    assert fingerprint(path) == settled


def test_a_first_line_longer_than_the_fingerprint_settles_at_its_length(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"x" * (FINGERPRINT_BYTES - 1))
    assert fingerprint(path) is None
    with path.open("ab") as file:
        file.write(b"xy")
    settled = fingerprint(path)
    with path.open("ab") as file:
        file.write(b"z" * 10 + b"\n")
    assert settled is not None
    assert fingerprint(path) == settled


def test_different_first_lines_differ_and_keys_round_trip(tmp_path: Path) -> None:
    one, two = tmp_path / "1.log", tmp_path / "2.log"
    one.write_bytes(b"first\n")
    two.write_bytes(b"second\n")
    assert fingerprint(one) != fingerprint(two)
    identity = FileIdentity(dev=64768, inode=1234, fingerprint="00ff")
    assert identity.key == "64768:1234:00ff"
    assert parse_key(identity.key) == (64768, 1234, "00ff")
    assert parse_key("not-a-key") is None
