"""Dead-letter files: where data the agent will never deliver goes, durably and with a reason.

One JSON object a line: `{"ts", "reason", "detail", "source", ..., "raw_b64" | "raw"}`. A
write returns only after fsync, because a dead letter is where the "nothing accepted is lost"
contract ends: the caller may checkpoint or acknowledge once `write_many` returns. When the file
passes `max_bytes` it is renamed to `<name>.1` (replacing the previous one, which is logged with
its size) so dead letters cannot fill the disk; every record is counted by reason either way.

A write that fails (disk full, no descriptor free, EIO) is cut back off the file and retried with
backoff until it works, counted in `dead_letter_write_errors_total`: the loop that called it waits
(back-pressure) instead of ending, and nothing it was about to acknowledge is lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from agent.core.atomicfile import FILE_MODE, fsync_dir, make_dirs, write_all
from agent.core.metrics import Metrics

log = logging.getLogger("agent.deadletter")

RETRY_INITIAL = 0.1  # seconds before the first retry of a failed write; doubles each time
RETRY_MAX = 5.0


def raw_field(raw: bytes) -> dict[str, str]:
    """The raw record as text when it is UTF-8, else base64 (so the file stays valid JSON)."""
    try:
        return {"raw": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw_b64": base64.b64encode(raw).decode("ascii")}


class DeadLetterFile:
    def __init__(self, path: Path, max_bytes: int, metrics: Metrics, pipeline: str) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._pipeline = pipeline
        self._counter = metrics.counter(
            "dead_letters_total",
            "Records written to a dead-letter file, by pipeline and reason.",
            ("pipeline", "reason"),
        )
        self._write_errors = metrics.counter(
            "dead_letter_write_errors_total",
            "Failed dead-letter writes (each is retried with backoff), by pipeline.",
            ("pipeline",),
        )
        self._lock = threading.Lock()
        self.write_errors = 0
        self.failing: str | None = None  # the last write error, until a write works again
        self.written = 0
        self.by_reason: dict[str, int] = {}

    async def write_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records (each must carry a "reason") and fsync before returning."""
        if not records:
            return
        lines = [self._line(record) for record in records]
        await self._append_until_written(b"".join(lines))
        for record in records:
            reason = str(record["reason"])
            self._counter.labels(self._pipeline, reason).inc()
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.written += len(records)

    async def _append_until_written(self, data: bytes) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                await asyncio.to_thread(self._append, data)
            except OSError as error:
                self.write_errors += 1
                self._write_errors.labels(self._pipeline).inc()
                self.failing = str(error)
                log.error(
                    "dead-letter write failed; retrying",
                    extra={"path": str(self.path), "error": str(error), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self.failing = None
            return

    async def write(self, record: Mapping[str, Any]) -> None:
        await self.write_many([record])

    def _line(self, record: Mapping[str, Any]) -> bytes:
        body = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        return orjson.dumps(body, default=repr) + b"\n"

    def _append(self, data: bytes) -> None:
        with self._lock:
            make_dirs(self.path.parent)
            rotated = self._rotate_if_full(len(data))
            created = rotated or not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                before = os.fstat(fd).st_size
                try:
                    write_all(fd, [data])
                    os.fsync(fd)
                except OSError:
                    # No half line for the retry to follow: the file stays one object a line.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, before)
                    raise
            finally:
                os.close(fd)
            if created:
                # The caller acks (deletes the source record) once this returns: the new file's
                # name, and the rotation's rename, must be as durable as its bytes.
                fsync_dir(self.path.parent)

    def _rotate_if_full(self, incoming: int) -> bool:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size + incoming <= self.max_bytes or size == 0:
            return False
        previous = self.path.with_name(self.path.name + ".1")
        if previous.exists():
            log.warning(
                "dead-letter file rotated; the older rotated file is discarded",
                extra={"path": str(previous), "bytes": previous.stat().st_size},
            )
        os.replace(self.path, previous)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "written": self.written,
            "by_reason": dict(self.by_reason),
            "write_errors": self.write_errors,
            "failing": self.failing,
        }
