"""Helpers for tailer tests: a factory for started tailers and a consumer that commits like a
pipeline does (through DeliveryTracker marks and a CheckpointStore)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.core.metrics import Metrics
from agent.spans.delivery.checkpoint import CheckpointStore, DeliveryTracker, FileCheckpoint
from agent.spans.tail.tailer import LineBatch, Tailer

TailerFactory = Callable[..., Coroutine[Any, Any, Tailer]]


@pytest.fixture
async def make_tailer(tmp_path: Path) -> AsyncIterator[TailerFactory]:
    """`await make_tailer(globs, **overrides)` starts a Tailer; all are stopped at teardown."""
    tailers: list[Tailer] = []

    async def make(
        globs: list[str],
        *,
        start_at: Literal["beginning", "end"] = "beginning",
        offsets: Mapping[str, int] | None = None,
        metrics: Metrics | None = None,
        **options: Any,
    ) -> Tailer:
        settings: dict[str, Any] = {
            "max_line_bytes": 1024 * 1024,
            "poll_interval": 0.1,
            "rotate_wait": 0.3,
            "oversize_dir": tmp_path / "oversize",
        }
        settings.update(options)
        tailer = Tailer(
            globs,
            start_at=start_at,
            offsets=offsets or {},
            metrics=metrics or Metrics(),
            **settings,
        )
        tailers.append(tailer)
        await tailer.start()
        return tailer

    yield make
    for tailer in tailers:
        await tailer.stop()


async def collect(
    tailer: Tailer, *, until: Callable[[list[LineBatch]], bool], timeout: float = 10.0
) -> list[LineBatch]:
    """Batches until `until(batches)` holds; fails the test after `timeout` seconds."""
    batches: list[LineBatch] = []
    deadline = time.monotonic() + timeout
    while not until(batches):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; got {summary(batches)}")
        batch = await tailer.next_batch(timeout=0.1)
        if batch is not None:
            batches.append(batch)
    return batches


def all_lines(batches: list[LineBatch]) -> list[bytes]:
    return [line for batch in batches for line in batch.all_lines()]


def summary(batches: list[LineBatch]) -> str:
    return ", ".join(
        f"{b.path}:{b.line_count}@{b.end_offset}{'(rotated)' if b.rotated else ''}"
        for b in batches[-20:]
    )


@dataclass
class CommittingConsumer:
    """Reads batches and commits them as a pipeline would once delivery is confirmed: one
    DeliveryTracker per file key, a mark per batch, delivery confirmed right away."""

    tailer: Tailer
    store: CheckpointStore
    batches: list[LineBatch] = field(default_factory=list)
    trackers: dict[str, DeliveryTracker] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)

    def consume(self, batch: LineBatch) -> None:
        self.batches.append(batch)
        tracker = self.trackers.setdefault(batch.file_key, DeliveryTracker())
        self.paths[batch.file_key] = batch.path
        mark = tracker.add_mark(batch.end_offset, batch.line_count, {})
        tracker.done(mark, batch.line_count)
        if batch.rotated:
            self.closed.add(batch.file_key)

    def save(self) -> None:
        checkpoints: dict[str, FileCheckpoint] = {}
        now = time.time_ns()
        for key, tracker in self.trackers.items():
            committed = tracker.committable()
            if committed is None or key in self.closed:
                continue
            offset, state = committed
            checkpoints[key] = FileCheckpoint(key, self.paths[key], offset, state, now)
        self.store.save(checkpoints)

    async def run_until(self, stop: asyncio.Event, save_every: float = 0.2) -> None:
        """Consume until `stop` is set and nothing more is readable, saving periodically."""
        last_save = time.monotonic()
        while True:
            batch = await self.tailer.next_batch(timeout=0.05)
            if batch is not None:
                self.consume(batch)
            elif stop.is_set():
                break
            if time.monotonic() - last_save > save_every:
                self.save()
                last_save = time.monotonic()
        self.save()
