"""Finding span log files: globs to stat results, directories to watch, rotated files by inode.

Everything here blocks on the file system and touches no tailer state, so the tailer runs it in
a worker thread (one scan at a time) and applies the result on the event loop.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WatchRoot:
    """A directory to subscribe to, and whether changes below its children matter too."""

    path: Path
    recursive: bool


def watch_roots(globs: Iterable[str]) -> list[WatchRoot]:
    """The deepest wildcard-free directory of each glob: where its files can appear."""
    roots: dict[Path, bool] = {}
    for pattern in globs:
        parts = Path(pattern).parts
        fixed: list[str] = []
        for part in parts[:-1]:
            if glob.has_magic(part):
                break
            fixed.append(part)
        recursive = len(fixed) < len(parts) - 1
        root = Path(*fixed) if fixed else Path(".")
        roots[root] = roots.get(root, False) or recursive
    return [WatchRoot(path, recursive) for path, recursive in sorted(roots.items())]


# A directory modified this recently may change again within the same timestamp tick, so its
# cached listing is not trusted (the "racy timestamp" problem git's index has too).
RACY_NS = 2_000_000_000


@dataclass(slots=True)
class _Listing:
    inode: int
    mtime_ns: int
    racy: bool
    paths: list[str]


SkipCallback = Callable[[str, str, str], None]
"""Told the path, the reason (a metric label) and a detail of a matched file that is not
followed, once per path."""

REPORTED_SKIPS = 10_000
"""Skipped paths remembered so each is reported once; past it they may be reported again."""


class Scanner:
    """Every regular file matching the globs, with its stat, at the cost of one ``lstat`` per
    file: a glob whose wildcards are all in the file name lists its directory again only when
    the directory's mtime changed (files created, deleted or renamed).

    Symbolic links: whoever can write the log directory could point a link at any file the
    agent may read, so a matched symlink is skipped unless ``follow_symlinks``, and even then
    a file whose real path is outside the watched directories (a link in a directory on the
    way counts too) is skipped. Skips are reported through ``on_skip``."""

    def __init__(
        self,
        globs: Iterable[str],
        *,
        follow_symlinks: bool = False,
        on_skip: SkipCallback = lambda path, reason, detail: None,
    ) -> None:
        globs = list(globs)
        self._roots = [root.path for root in watch_roots(globs)]
        self._follow = follow_symlinks
        self._on_skip = on_skip
        self._reported: set[str] = set()
        self._by_directory: list[tuple[str, re.Pattern[str]]] = []
        self._general: list[str] = []
        for pattern in globs:
            directory, name = os.path.split(pattern)
            if glob.has_magic(directory) or "**" in pattern:
                self._general.append(pattern)
            else:
                self._by_directory.append((directory, _name_matcher(name)))
        self._listings: dict[str, _Listing] = {}

    def scan(self) -> dict[str, os.stat_result]:
        found: dict[str, os.stat_result] = {}
        roots = [os.path.realpath(root) for root in self._roots]
        real_directories: dict[str, str] = {}
        for path in self._candidates():
            if path in found:
                continue
            try:
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    if not self._follow:
                        self._skip(path, "symlink", "spans.follow_symlinks is false")
                        continue
                    real = os.path.realpath(path)
                    info = os.stat(path)
                else:
                    directory, name = os.path.split(path)
                    if directory not in real_directories:
                        real_directories[directory] = os.path.realpath(directory)
                    real = os.path.join(real_directories[directory], name)
            except OSError:
                continue
            if not _inside(real, roots):
                self._skip(path, "outside_watched_directories", f"resolves to {real}")
                continue
            if stat.S_ISREG(info.st_mode):
                found[path] = info
        return found

    def _skip(self, path: str, reason: str, detail: str) -> None:
        if path in self._reported:
            return
        if len(self._reported) >= REPORTED_SKIPS:
            self._reported.clear()
        self._reported.add(path)
        self._on_skip(path, reason, detail)

    def _candidates(self) -> Iterator[str]:
        for pattern in self._general:
            yield from glob.iglob(pattern, recursive=True)
        for directory, matcher in self._by_directory:
            yield from self._listing(directory, matcher)

    def _listing(self, directory: str, matcher: re.Pattern[str]) -> list[str]:
        try:
            info = os.stat(directory)
        except OSError:
            return []
        cached = self._listings.get(directory)
        if (
            cached is not None
            and not cached.racy
            and (cached.inode, cached.mtime_ns) == (info.st_ino, info.st_mtime_ns)
        ):
            return cached.paths
        try:
            with os.scandir(directory) as entries:
                paths = [entry.path for entry in entries if matcher.fullmatch(entry.name)]
        except OSError:
            return []
        racy = time.time_ns() - info.st_mtime_ns < RACY_NS
        self._listings[directory] = _Listing(info.st_ino, info.st_mtime_ns, racy, paths)
        return paths


def _inside(real: str, roots: list[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _name_matcher(name: str) -> re.Pattern[str]:
    """A file-name glob as glob.glob reads it: wildcards do not match a leading dot."""
    translated = fnmatch.translate(name)
    if not name.startswith("."):
        translated = r"(?!\.)" + translated
    return re.compile(translated)


def find_by_inode(
    directories: Iterable[Path], wanted: set[tuple[int, int]], *, follow_symlinks: bool = False
) -> dict[tuple[int, int], str]:
    """Paths of the wanted (dev, inode) pairs among the files of ``directories``.

    Used at start for checkpointed files that no glob matches any more: a file rotated from
    ``app.log`` to ``app.log.1`` while the agent was stopped still has lines to read.
    """
    inodes = {inode for _dev, inode in wanted}
    found: dict[tuple[int, int], str] = {}
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            # The inode comes with the directory listing; stat only the candidates.
            if entry.inode() not in inodes or (entry.is_symlink() and not follow_symlinks):
                continue
            try:
                info = entry.stat()
            except OSError:
                continue
            pair = (info.st_dev, info.st_ino)
            if pair in wanted and stat.S_ISREG(info.st_mode):
                found.setdefault(pair, entry.path)
    return found
