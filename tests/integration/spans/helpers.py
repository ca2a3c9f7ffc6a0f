"""Shared by the span pipeline tests: span-json lines, configs, a pipeline run in-process."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from agent.config.load import load_config
from agent.config.tree import Config
from agent.core.metrics import Metrics
from agent.spans.pipeline import SpanPipeline

BASE_NS = 1_700_000_000_000_000_000


def trace_id_of(index: int, salt: int = 0) -> str:
    return f"{salt:08x}{index + 1:024x}"


def span_id_of(index: int, salt: int = 0) -> str:
    return f"{salt:04x}{index + 1:012x}"


def span_json(
    index: int,
    service: str,
    *,
    salt: int = 0,
    start_ns: int | None = None,
    parent: str | None = None,
    payload: str | None = None,
    **fields: Any,
) -> bytes:
    """One span-json line (4 attributes, 1 event), newline included."""
    start = start_ns if start_ns is not None else time.time_ns() - 60_000_000_000 + index * 1000
    record: dict[str, Any] = {
        "trace_id": trace_id_of(index, salt),
        "span_id": span_id_of(index, salt),
        "name": f"op-{index}",
        "kind": "server",
        "start_time_unix_nano": start,
        "duration_us": 1500,
        "service": service,
        "attributes": {
            "http.method": "GET",
            "http.route": "/jobs/{id}",
            "http.status_code": 200,
            "seq": index,
        },
        "events": [{"name": "cache.miss", "time_unix_nano": start + 500_000, "attributes": {}}],
    }
    if parent is not None:
        record["parent_span_id"] = parent
    if payload is not None:
        record["attributes"]["payload"] = payload
    record.update(fields)
    return orjson.dumps(record) + b"\n"


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def pipeline_config(
    tmp_path: Path, endpoint: str, paths: list[str] | None = None, **settings: str
) -> Config:
    values = {
        "data_dir": str(tmp_path / "data"),
        "spans.paths": ",".join(paths or [str(tmp_path / "logs" / "*.log")]),
        "spans.format": "span-json",
        "spans.poll_interval": "50ms",
        "spans.checkpoint_interval": "100ms",
        "spans.rotate_wait": "300ms",
        "export.endpoint": endpoint,
        "export.timeout": "2s",
        "export.batch.linger": "20ms",
        "export.retry.initial_interval": "50ms",
        "export.retry.max_interval": "300ms",
        "shutdown_timeout": "8s",
    }
    values.update({key.replace("__", "."): value for key, value in settings.items()})
    return load_config(environ={}, cli_overrides=[f"{k}={v}" for k, v in values.items()])


@asynccontextmanager
async def running_pipeline(config: Config) -> AsyncIterator[SpanPipeline]:
    pipeline = SpanPipeline(config, Metrics(), Path(config.data_dir))
    await pipeline.start()
    try:
        yield pipeline
    finally:
        await pipeline.stop()


def dead_letters(config: Config) -> list[dict[str, Any]]:
    path = Path(config.data_dir) / "deadletter" / "spans.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]
