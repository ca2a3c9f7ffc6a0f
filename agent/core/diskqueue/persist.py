"""Persisting the disk queue's acks: the frontier state file, and deleting what it frees.

Acks are persisted (the contiguous frontier, below which every seq is acked, plus up to 1024
acked ranges above it) at most every ``interval`` seconds or every ``records`` acks, whichever
comes first, and on close. The state file is written by the queue's I/O thread, so its fsyncs
never delay a commit; segments wholly below the persisted frontier are deleted right after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.core.atomicfile import save_state
from agent.core.diskqueue.directory import STATE_NAME, STATE_VERSION, SegmentTable
from agent.core.diskqueue.frontier import AckFrontier

log = logging.getLogger(__name__)

# Acked ranges above the frontier kept across a crash; beyond this many, duplicates instead.
MAX_PERSISTED_RANGES = 1024

RunIo = Callable[..., Awaitable[Any]]


class AckPersister:
    def __init__(
        self,
        directory: Path,
        table: SegmentTable,
        frontier: AckFrontier,
        *,
        interval: float,
        records: int,
        run_io: RunIo,
        durable_next_seq: Callable[[], int],
        on_space: Callable[[], None],
    ) -> None:
        self._directory = directory
        self._table = table
        self._frontier = frontier
        self._interval = interval
        self._records = records
        self._run_io = run_io
        self._durable_next_seq = durable_next_seq
        self._on_space = on_space
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._unpersisted = False
        self._acked_since = 0
        self._last = time.monotonic()
        self._armed = False
        self.failures = 0

    def start(self, on_died: Callable[[BaseException], None]) -> None:
        self._running = True
        self._task = asyncio.create_task(self._loop(), name="diskqueue-persist")

        def done(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                error = task.exception()
                assert error is not None
                log.error("disk queue %s: persist task died", self._directory, exc_info=error)
                on_died(error)

        self._task.add_done_callback(done)

    async def stop(self) -> None:
        """End the task, then persist what is left."""
        self._running = False
        self._work.set()
        if self._task is not None:
            # Its failure, if any, was logged and refused puts: close all the same.
            with contextlib.suppress(Exception):
                await self._task
        if self._unpersisted:
            await self.persist()

    async def abort(self) -> None:
        self._running = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def acked(self) -> None:
        self._acked_since += 1
        self.changed()

    def changed(self) -> None:
        # The first change after a persist wakes the task so that it arms the interval timer;
        # reaching the record count wakes it to persist at once.
        self._unpersisted = True
        if not self._armed or self._acked_since >= self._records:
            self._armed = True
            self._work.set()

    async def _loop(self) -> None:
        while self._running:
            await self._wait()
            if self._due() and self._running:
                await self.persist()

    async def _wait(self) -> None:
        if not self._running or self._due():
            return
        timeout = None
        if self._unpersisted:
            timeout = max(0.0, self._last + self._interval - time.monotonic())
        self._work.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)

    def _due(self) -> bool:
        if not self._unpersisted:
            return False
        return (
            not self._running
            or self._acked_since >= self._records
            or time.monotonic() - self._last >= self._interval
        )

    async def persist(self) -> None:
        # Never claim acks beyond what is synced: after a crash those seqs are handed out anew.
        durable = self._durable_next_seq()
        frontier = min(self._frontier.frontier, durable)
        state = {
            "acked_frontier": frontier,
            "done_ranges": self._frontier.done_ranges(durable, MAX_PERSISTED_RANGES),
        }
        doomed = self._table.count_fully_below(frontier)
        paths = [segment.path for segment in self._table.segments[:doomed]]
        self._last = time.monotonic()
        self._acked_since = 0
        self._armed = False
        # Acks of records not yet synced were left out: persist again after the next commit.
        self._unpersisted = self._frontier.has_done_at_or_above(durable)
        try:
            await self._run_io(save_acks_and_delete, self._directory, state, paths)
        except OSError as error:
            # Acks not persisted come back as duplicates after a crash; the next try may work.
            self.failures += 1
            log.error("disk queue %s: cannot persist the frontier: %s", self._directory, error)
            self._unpersisted = True
            return
        if self._table.drop_first(doomed):
            self._on_space()


def save_acks_and_delete(directory: Path, state: dict[str, Any], paths: list[Path]) -> None:
    # Acks before the unlinks they allow, so the state on disk always explains a missing
    # segment. The unlinks need no directory fsync: if a crash undoes one, open deletes again.
    save_state(directory / STATE_NAME, STATE_VERSION, state)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
