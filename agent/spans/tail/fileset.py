"""The files a tailer follows: by inode and by path, where rotation left them, and whose turn it
is to be read.

A scan's result (paths and their stat) is reconciled here: a new inode is a new file, an inode
under another matching name was renamed, an inode no name leads to any more was rotated away or
deleted. Files with unread data wait in two queues: rotated files first (until their end is
reached once, so lines come out in the order written across a rotation), then everyone else in
turn. Plain state on the event loop; no I/O but an ``fstat`` of rotated files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque

from agent.core.metrics import Metrics
from agent.spans.tail.descriptors import OpenFiles
from agent.spans.tail.trackedfile import TrackedFile

log = logging.getLogger("agent.spans.tail.tailer")


class TailerMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.lines = metrics.counter("span_lines_read_total", "Lines read from span log files.")
        self.bytes = metrics.counter("span_bytes_read_total", "Bytes read from span log files.")
        self.files = metrics.gauge("span_files_watched", "Span log files currently followed.")
        self.oversize = metrics.counter(
            "span_oversize_lines_total", "Records over spans.max_line_bytes, set aside whole."
        )
        self.truncations = metrics.counter(
            "span_file_truncations_total",
            "Span log files that shrank (copytruncate) and were read again from the start.",
        )
        self.rotations = metrics.counter(
            "span_file_rotations_total", "Span log files renamed or deleted while followed."
        )
        self.skipped = metrics.counter(
            "span_files_skipped_total",
            "Matched paths not read: symlinks (spans.follow_symlinks) or outside the watched "
            "directories.",
            ("reason",),
        )
        self.lost_partials = metrics.counter(
            "span_partial_lines_truncated_total",
            "Unfinished last lines cut off by a truncation before their newline was written.",
        )


class FileSet:
    def __init__(self, metrics: TailerMetrics, rotate_wait: float, descriptors: OpenFiles) -> None:
        self._metrics = metrics
        self.descriptors = descriptors
        self._rotate_wait = rotate_wait
        self.files: dict[tuple[int, int], TrackedFile] = {}
        self.by_path: dict[str, TrackedFile] = {}
        self._urgent: deque[TrackedFile] = deque()
        self._ready: deque[TrackedFile] = deque()
        self.wakeup = asyncio.Event()
        """Set whenever a file becomes ready to read."""

    def bytes_behind(self) -> int:
        return sum(tracked.bytes_behind for tracked in self.files.values())

    def add(self, tracked: TrackedFile) -> bool:
        if tracked.pair in self.files:  # a second name (hard link) of a followed file
            tracked.reader.close()
            return False
        self.files[tracked.pair] = tracked
        if not tracked.parked:
            self.descriptors.opened(tracked)
        self.mark_ready(tracked)
        self._metrics.files.set(len(self.files))
        return True

    def forget(self, tracked: TrackedFile) -> None:
        tracked.closed = True
        tracked.reader.close()
        self.descriptors.closed(tracked)
        self.files.pop(tracked.pair, None)
        if self.by_path.get(tracked.path) is tracked:
            del self.by_path[tracked.path]
        self._metrics.files.set(len(self.files))

    def close_all(self) -> None:
        for tracked in self.files.values():
            tracked.closed = True
            tracked.reader.close()
            self.descriptors.closed(tracked)
        self.files.clear()
        self.by_path.clear()
        self._metrics.files.set(0)

    def mark_ready(self, tracked: TrackedFile) -> None:
        if tracked.closed or tracked.queued:
            return
        tracked.queued = True
        (self._urgent if tracked.drain_first else self._ready).append(tracked)
        self.wakeup.set()

    def pop_ready(self) -> TrackedFile | None:
        for queue in (self._urgent, self._ready):
            while queue:
                tracked = queue.popleft()
                tracked.queued = False
                if not tracked.closed:
                    return tracked
        return None

    def apply_scan(
        self, found: dict[str, os.stat_result], opened: list[TrackedFile], now: float
    ) -> None:
        """Take in a scan: new files, renames, files no name leads to any more, growth."""
        for tracked in opened:
            self.add(tracked)
        paths_by_pair: dict[tuple[int, int], list[str]] = {}
        for path, info in found.items():
            paths_by_pair.setdefault((info.st_dev, info.st_ino), []).append(path)
        by_path: dict[str, TrackedFile] = {}
        for pair, tracked in self.files.items():
            paths = paths_by_pair.get(pair)
            if paths is None:
                if tracked.gone_since is None:
                    self._gone(tracked, now)
                continue
            if tracked.path not in paths:
                self._moved(tracked, paths[0])
            tracked.gone_since = None
            self.note_size(tracked, found[tracked.path].st_size, now)
            for path in paths:
                by_path[path] = tracked
        self.by_path = by_path

    def check_gone(self, now: float) -> None:
        """Let go of rotated-away files that were read to their end and stayed quiet."""
        for tracked in list(self.files.values()):
            if tracked.gone_since is None:
                continue
            if tracked.parked:  # read it now: reopened where rotation put it, or let go
                self.mark_ready(tracked)
                continue
            try:
                self.note_size(tracked, tracked.reader.stat_size(), now)
            except OSError:
                continue
            quiet_since = max(tracked.gone_since, tracked.last_growth)
            if tracked.at_eof and now - quiet_since >= self._rotate_wait:
                tracked.let_go_due = True
                self.mark_ready(tracked)

    def note_size(self, tracked: TrackedFile, size: int, now: float) -> None:
        if size != tracked.seen_size:
            tracked.seen_size = size
            tracked.last_growth = now
            tracked.at_eof = False
            tracked.let_go_due = False
            # Late lines in a rotated file are older than anything in its successor.
            tracked.drain_first = tracked.drain_first or tracked.gone_since is not None
            self.mark_ready(tracked)

    def _moved(self, tracked: TrackedFile, path: str) -> None:
        log.info("span log file renamed", extra={"path": tracked.path, "new_path": path})
        tracked.reader.path = path
        tracked.drain_first = True
        self._metrics.rotations.inc()
        self.mark_ready(tracked)

    def _gone(self, tracked: TrackedFile, now: float) -> None:
        log.info(
            "span log file rotated away or deleted; reading it to its end",
            extra={"path": tracked.path, "rotate_wait": self._rotate_wait},
        )
        tracked.gone_since = now
        tracked.drain_first = True
        self._metrics.rotations.inc()
        self.mark_ready(tracked)
