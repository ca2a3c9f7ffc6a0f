"""Follow span log files matched by globs, through rotation, and hand out batches of lines.

Identity (see ``fileid``): device + inode + a fingerprint of the first line. A file renamed
within or out of the globs keeps its identity and is read to its end through its open
descriptor; the file created in its place is a new identity read from the beginning. Rotated
files are drained before other files, so a service's lines come out in the order written
across a rotation. A file shrinking below what was read (copytruncate) is read again from 0.

Which data is read where (``StartPolicy``): a checkpointed file resumes at its offset; files
appearing while the agent runs, or since the last run, are read from the beginning;
``start_at: end`` only skips what the files held at the agent's very first start.

Reading is pulled by the caller through :meth:`Tailer.next_batch`: nothing is read that was not
asked for, so the files themselves are the buffer when downstream is slow. Files with unread
data take turns (one bounded batch each). Idle files cost a ``stat`` per polling interval and
nothing else. Change notifications (watchfiles) start a scan as soon as a file changes; while
they work, the poll is only a safety net and runs ``NOTIFIED_POLL_FACTOR`` times less often.

A rotated-away or deleted file is let go once it has been read to its end and has not grown for
``rotate_wait``; its last batch carries ``rotated=True`` and its key is not used again. After a
copytruncate the key changes with the file's first line, and the old key gets an empty
``rotated=True`` batch; if the first line is byte-for-byte the same, the key stays and its
offsets simply restart from 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from agent.core.lifecycle import TaskSupervisor
from agent.core.metrics import Metrics
from agent.spans.tail import discovery
from agent.spans.tail.batches import BatchReader, LineBatch
from agent.spans.tail.descriptors import OpenFiles, raise_open_file_limit
from agent.spans.tail.fileid import FINGERPRINT_BYTES, FileIdentity, parse_key
from agent.spans.tail.fileset import FileSet, TailerMetrics
from agent.spans.tail.linereader import OversizeLine
from agent.spans.tail.trackedfile import (
    StartPolicy,
    TrackedFile,
    open_flags,
    open_rotated,
    open_tracked,
)
from agent.spans.tail.watcher import ChangeWatcher

__all__ = ["FINGERPRINT_BYTES", "FileIdentity", "LineBatch", "OversizeLine", "Tailer"]

# With working notifications, poll every 10 x spans.poll_interval (10 s by default): files on
# filesystems whose writes inotify misses are still picked up, just later.
NOTIFIED_POLL_FACTOR = 10

log = logging.getLogger("agent.spans.tail.tailer")

STATUS_FILES = 20
"""How many files /status lists (those furthest behind); the totals cover all of them."""


class Tailer:
    def __init__(
        self,
        globs: list[str],
        *,
        start_at: Literal["beginning", "end"],
        max_line_bytes: int,
        poll_interval: float,
        rotate_wait: float,
        offsets: Mapping[str, int],
        oversize_dir: Path,
        metrics: Metrics,
        read_chunk_bytes: int = 256 * 1024,
        # Bytes bound a batch (a read stops after `read_chunk_bytes`); the line count only
        # matters for short lines, such as a pretty-printed object's (~26 bytes): a lower
        # bound made a batch of them cost a thread hand-off every ~100 KB (4,096), a chunk
        # split again for the rest (16,384, before such lines were read as blocks) and a
        # block half the size of a read of longer lines (16,384: a read holds ~20,000).
        max_batch_lines: int = 65536,
        follow_symlinks: bool = False,
        max_spill_bytes: int = 256 * 1024**2,
        max_open_files: int = 512,
    ) -> None:
        self._globs = [os.path.abspath(pattern) for pattern in globs]
        self._matchers = [re.compile(fnmatch.translate(pattern)) for pattern in self._globs]
        self._roots = discovery.watch_roots(self._globs)
        self._follow_symlinks = follow_symlinks
        self._scanner = discovery.Scanner(
            self._globs, follow_symlinks=follow_symlinks, on_skip=self._on_skip
        )
        self._offsets = dict(offsets)
        self._policy = StartPolicy(
            offsets=self._offsets,
            start_at_end=start_at == "end" and not offsets,
            max_line_bytes=max_line_bytes,
            oversize_dir=oversize_dir,
            follow_symlinks=follow_symlinks,
            max_spill_bytes=max_spill_bytes,
        )
        self._poll_interval = poll_interval
        self._metrics = TailerMetrics(metrics)
        self._set = FileSet(self._metrics, rotate_wait, OpenFiles(max_open_files, metrics))
        self._reader = BatchReader(
            self._set,
            self._metrics,
            open_flags=open_flags(self._policy),
            max_lines=max_batch_lines,
            chunk_bytes=read_chunk_bytes,
        )
        metrics.gauge_callback(
            "span_file_bytes_behind",
            "Bytes of followed span log files not yet read.",
            lambda: {(): float(self._set.bytes_behind())},
        )
        self._rescan_soon = asyncio.Event()
        self._read_lock = asyncio.Lock()
        self._tasks = TaskSupervisor("span-tailer", metrics)
        self._watcher: ChangeWatcher | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        """Find the files and resume them (a scan in a worker thread); follow in background."""
        if self._started or self._stopped:
            return
        self._started = True
        raise_open_file_limit()
        await self._initial_scan()
        self._poll_task = self._tasks.spawn("poll", self._poll_loop())
        self._ensure_watcher()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._set.wakeup.set()
        self._rescan_soon.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._poll_task is not None:
            # Let a scan in its worker thread finish: cancelling it would leak what it opened.
            await asyncio.wait([self._poll_task], timeout=5.0)
        await self._tasks.close()
        async with self._read_lock:
            self._set.close_all()

    async def next_batch(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the pipeline's polling API
    ) -> LineBatch | None:
        """The next lines from any file with unread data; None on timeout or once stopped.

        Reading is driven by the caller: when the caller does not ask, nothing more is read
        (the files are the buffer). Call it from one task at a time."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self._read_lock:
            while not self._stopped:
                tracked = self._set.pop_ready()
                if tracked is None:
                    if not await self._wait_for_work(deadline):
                        return None
                    continue
                batch = await self._reader.read(tracked)
                if batch is not None:
                    return batch
                if deadline is not None and loop.time() >= deadline:
                    return None
        return None

    def known_files(self) -> dict[str, FileIdentity]:
        """Identities of the files followed now (a file whose first line is still incomplete
        has none yet, and nothing to checkpoint)."""
        files = self._set.files.values()
        return {t.identity.key: t.identity for t in files if t.identity is not None}

    def known_paths(self) -> dict[str, str]:
        """The path each followed file was last seen under, by key."""
        files = self._set.files.values()
        return {t.identity.key: t.path for t in files if t.identity is not None}

    def status(self) -> dict[str, Any]:
        files = sorted(self._set.files.values(), key=lambda t: t.bytes_behind, reverse=True)
        watcher = self._watcher
        return {
            "files_watched": len(files),
            "bytes_behind": sum(t.bytes_behind for t in files),
            "notifications": bool(watcher is not None and watcher.active),
            "notification_error": watcher.failure if watcher is not None else "",
            "failure": repr(self._tasks.failure) if self._tasks.failure else "",
            "files": [_file_status(t) for t in files[:STATUS_FILES]],
        }

    # Reading -----------------------------------------------------------------------------

    async def _wait_for_work(self, deadline: float | None) -> bool:
        self._set.wakeup.clear()
        remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
        if remaining is not None and remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self._set.wakeup.wait(), remaining)
        except TimeoutError:
            return False
        return True

    # Discovery ---------------------------------------------------------------------------

    async def _initial_scan(self) -> None:
        found, opened = await asyncio.to_thread(
            self._scan_and_open, frozenset(), True, self._set.descriptors.max_open
        )
        self._set.apply_scan(found, opened, time.monotonic())
        rotated = await asyncio.to_thread(self._find_rotated, found)
        for tracked in rotated:
            self._set.add(tracked)
        self._set.descriptors.make_room()
        self._metrics.rotations.inc(len(rotated))
        resumed = sum(1 for t in opened if t.identity and t.identity.key in self._offsets)
        log.info(
            "span tailer started",
            extra={
                "files": len(self._set.files),
                "resumed_from_checkpoint": resumed + len(rotated),
                "rotated_while_stopped": len(rotated),
                "globs": self._globs,
            },
        )

    def _current_poll_interval(self) -> float:
        """While change notifications work they start every read; the poll is then only a
        safety net and runs NOTIFIED_POLL_FACTOR times less often (idle files cost less).
        The normal pace stays while a glob's directory is not watched (it does not exist
        yet: only a scan finds it), and while a rotated-away file waits out rotate_wait (no
        notification comes for it: the scan is what lets it go on time)."""
        watcher = self._watcher
        if watcher is None or not watcher.active or len(watcher.roots) < len(self._roots):
            return self._poll_interval
        if any(tracked.gone_since is not None for tracked in self._set.files.values()):
            return self._poll_interval
        return self._poll_interval * NOTIFIED_POLL_FACTOR

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescan_soon.wait(), self._current_poll_interval())
            self._rescan_soon.clear()
            if self._stopped:
                return
            try:
                await self._rescan()
            except OSError as error:  # a directory vanished mid-scan and the like: try again
                log.warning("span log scan failed", extra={"error": repr(error)})

    async def _rescan(self) -> None:
        room = self._set.descriptors.max_open - len(self._set.descriptors)
        found, opened = await asyncio.to_thread(
            self._scan_and_open, frozenset(self._set.files), False, room
        )
        if self._stopped:
            for tracked in opened:
                tracked.reader.close()
            return
        now = time.monotonic()
        self._set.apply_scan(found, opened, now)
        self._set.descriptors.make_room()
        self._set.check_gone(now)
        self._ensure_watcher()

    def _scan_and_open(
        self, known: frozenset[tuple[int, int]], at_startup: bool, room: int
    ) -> tuple[dict[str, os.stat_result], list[TrackedFile]]:
        """Blocking part of a scan: glob, stat, open the files not followed yet. Past `room`
        descriptors a new file is parked as soon as its identity and start are known."""
        found = self._scanner.scan()
        now = time.monotonic()
        opened: list[TrackedFile] = []
        for path, info in found.items():
            if (info.st_dev, info.st_ino) in known:
                continue
            tracked = open_tracked(path, self._policy, at_startup=at_startup, now=now)
            if tracked is not None:
                if len(opened) >= room and tracked.identity is not None:
                    tracked.reader.close_descriptor()
                opened.append(tracked)
        return found, opened

    def _find_rotated(self, found: dict[str, os.stat_result]) -> list[TrackedFile]:
        """Checkpointed files no glob matches now: rotated while the agent was stopped.
        They are looked for among the other files of the watched directories."""
        present = {(info.st_dev, info.st_ino) for info in found.values()}
        wanted: dict[tuple[int, int], FileIdentity] = {}
        for key in self._offsets:
            parsed = parse_key(key)
            if parsed is not None and (parsed[0], parsed[1]) not in present:
                wanted[(parsed[0], parsed[1])] = FileIdentity(*parsed)
        if not wanted:
            return []
        directories = {root.path for root in self._roots}
        directories.update(Path(path).parent for path in found)
        now = time.monotonic()
        rotated: list[TrackedFile] = []
        found_by_inode = discovery.find_by_inode(
            directories, set(wanted), follow_symlinks=self._follow_symlinks
        )
        for pair, path in found_by_inode.items():
            tracked = open_rotated(path, wanted[pair], self._policy, now)
            if tracked is not None:
                log.info("found a span log file rotated while stopped", extra={"path": path})
                rotated.append(tracked)
        return rotated

    def _on_skip(self, path: str, reason: str, detail: str) -> None:
        """From the scan's worker thread: a matched file that is not read."""
        self._metrics.skipped.labels(reason).inc()
        log.warning(
            "span log file skipped", extra={"path": path, "reason": reason, "detail": detail}
        )

    # Notifications -----------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        """(Re)subscribe when the set of existing watched directories changed."""
        existing = [root for root in self._roots if root.path.is_dir()]
        if self._watcher is not None and self._watcher.roots == existing:
            return
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if existing and not self._stopped:
            self._watcher = ChangeWatcher(existing, self._on_changes)
            self._tasks.spawn("watch", self._watcher.run())

    def _on_changes(self, paths: set[str], structural: bool) -> None:
        rescan = False
        for path in paths:
            tracked = self._set.by_path.get(path)
            if tracked is not None:
                self._set.mark_ready(tracked)
                rescan = rescan or structural
            elif any(matcher.match(path) for matcher in self._matchers):
                rescan = True
        if rescan:
            self._rescan_soon.set()


def _file_status(tracked: TrackedFile) -> dict[str, Any]:
    return {
        "path": tracked.path,
        "key": tracked.identity.key if tracked.identity is not None else "",
        "offset": tracked.reader.offset,
        "size": tracked.seen_size,
        "bytes_behind": tracked.bytes_behind,
        "rotated": tracked.gone_since is not None,
    }
