"""Log rotation at a steady write rate, through the whole pipeline into a real Jaeger."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from tests.harness import Jaeger
from tests.integration.spans.helpers import pipeline_config, running_pipeline, span_id_of, span_json

pytestmark = pytest.mark.integration

SPANS_PER_TRACE = 20


def write_with_rotation(log_file: Path, service: str, total: int, rotate_every: int) -> int:
    """Write `total` lines at about 1,000 a second, renaming the file away (logrotate's
    `create` mode: app.log -> app.log.1, a new app.log) every `rotate_every` lines."""
    rotations = 0
    out = log_file.open("ab")
    for index in range(total):
        if index and index % rotate_every == 0:
            out.close()
            os.replace(log_file, log_file.with_name(log_file.name + ".1"))
            rotations += 1
            out = log_file.open("ab")
        out.write(span_json(index, service, salt=index // SPANS_PER_TRACE))
        if index % 10 == 9:
            out.flush()
            time.sleep(0.01)
    out.close()
    return rotations


async def test_rotation_at_a_steady_rate_loses_nothing(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    log_file = tmp_path / "logs" / "app.log"
    log_file.parent.mkdir()
    total = 2000
    config = pipeline_config(tmp_path, jaeger.otlp_http_endpoint, paths=[str(log_file)])
    rotations: list[int] = []
    async with running_pipeline(config) as pipeline:
        writer = threading.Thread(
            target=lambda: rotations.append(write_with_rotation(log_file, service_name, total, 300))
        )
        writer.start()
        await asyncio.to_thread(writer.join, 30)
        stored = await asyncio.to_thread(
            jaeger.query.wait_for_spans, service_name, total, timeout=20
        )
        summary = pipeline.summary()
    assert rotations == [6]
    assert {span.span_id for span in stored} == {
        span_id_of(i, i // SPANS_PER_TRACE) for i in range(total)
    }
    assert summary["lines_read"] == total, "every line read exactly once"
    assert summary["dead_lettered"] == {}
