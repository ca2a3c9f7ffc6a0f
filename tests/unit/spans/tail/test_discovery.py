"""Scanner agrees with glob.glob, sees created and deleted files, and finds rotated inodes."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from agent.spans.tail.discovery import Scanner, WatchRoot, find_by_inode, watch_roots


def make_tree(root: Path) -> None:
    for name in ("a.log", "b.log", ".hidden.log", "c.txt", "sub/d.log", "sub/deep/e.log"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x\n")


def test_scan_matches_what_glob_finds(tmp_path: Path) -> None:
    make_tree(tmp_path)
    patterns = [str(tmp_path / "*.log"), str(tmp_path / "*/d.log"), str(tmp_path / "**/*.log")]
    for pattern in patterns:
        expected = {p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)}
        assert set(Scanner([pattern]).scan()) == expected, pattern


def test_scan_sees_files_created_and_deleted_between_scans(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"")
    old = 1_000_000_000
    os.utime(tmp_path, (old, old))  # a directory quiet for long: its listing gets cached
    scanner = Scanner([str(tmp_path / "*.log")])
    assert set(scanner.scan()) == {str(tmp_path / "a.log")}
    assert set(scanner.scan()) == {str(tmp_path / "a.log")}
    (tmp_path / "b.log").write_bytes(b"")
    (tmp_path / "a.log").unlink()
    assert set(scanner.scan()) == {str(tmp_path / "b.log")}


def test_watch_roots_are_the_wildcard_free_directories(tmp_path: Path) -> None:
    roots = watch_roots([f"{tmp_path}/*.log", f"{tmp_path}/svc-*/app.log", f"{tmp_path}/x/a.log"])
    assert roots == [WatchRoot(tmp_path, True), WatchRoot(tmp_path / "x", False)]


def test_find_by_inode_locates_a_renamed_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"x\n")
    info = path.stat()
    path.rename(tmp_path / "app.log.1")
    (tmp_path / "app.log").write_bytes(b"new\n")
    found = find_by_inode([tmp_path], {(info.st_dev, info.st_ino), (info.st_dev, 1)})
    assert found == {(info.st_dev, info.st_ino): str(tmp_path / "app.log.1")}
