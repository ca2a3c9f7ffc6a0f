"""Keeps the directory of whole oversize records (lines over `spans.max_line_bytes`) bounded.

The tailer copies each oversize record whole into its own spill file, and the dead-letter line
points at it. Those files would grow without limit on a service that keeps writing huge
lines, so past `spans.oversize_max_bytes` the oldest are deleted — logged and counted, never
silently: the dead-letter record (reason, source, offset, length) stays either way.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.core.metrics import Metrics

log = logging.getLogger("agent.spans.tail.oversize")


class SpillDirectory:
    def __init__(self, directory: Path, max_bytes: int, metrics: Metrics) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._discarded = metrics.counter(
            "span_oversize_spills_discarded_total",
            "Whole oversize records deleted to keep the spill directory under its limit.",
        )
        self.discarded_files = 0

    def trim(self) -> int:
        """Delete the oldest spill files until the rest fit; returns how many went.

        Blocking (directory listing and unlinks): call it from a thread."""
        files = self._files_oldest_first()
        total = sum(size for _, size, _ in files)
        removed = 0
        for path, size, _ in files[:-1]:  # never the newest: its dead letter was just written
            if total <= self.max_bytes:
                break
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            total -= size
            removed += 1
            log.warning(
                "oversize record deleted to keep the spill directory under its limit",
                extra={"path": str(path), "bytes": size, "limit": self.max_bytes},
            )
        self._discarded.inc(removed)
        self.discarded_files += removed
        return removed

    def _files_oldest_first(self) -> list[tuple[Path, int, int]]:
        entries: list[tuple[Path, int, int]] = []
        try:
            scan = os.scandir(self.directory)
        except FileNotFoundError:
            return entries
        with scan:
            for entry in scan:
                if entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    entries.append((Path(entry.path), info.st_size, info.st_mtime_ns))
        entries.sort(key=lambda item: item[2])
        return entries
