"""Log rotation at a steady write rate, through the whole pipeline into a real Jaeger."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import orjson
import pytest

from agent.spans.decode.jobfirst_mapping import w3c_trace_id
from tests.harness import Jaeger
from tests.harness.eventually import eventually, eventually_sync
from tests.integration.spans.helpers import (
    append,
    pipeline_config,
    running_pipeline,
    span_id_of,
    span_json,
)

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


def jobfirst_line(message: str, trace: str, span: str, **fields: object) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(span[5:]) // 1_000_000_000))
    record = {
        "level": "info",
        "message": message,
        "span_id": span,
        "span_name": "sync jobs",
        "timestamp": stamp,
        "trace_id": trace,
        **fields,
    }
    return orjson.dumps(dict(sorted(record.items()))) + b"\n"


async def test_a_jobfirst_span_across_a_rename_rotation_is_exported_once(
    tmp_path: Path, jaeger: Jaeger, service_name: str
) -> None:
    """Start line in the file that is rotated away, end line in the new one: one complete span
    (the start line's fields, both events). The agent is stopped while the old file is still
    followed (inside rotate_wait), so its checkpoint is what the restart trusts: no incomplete
    copy comes back from it when the orphan timeout passes."""
    log_file = tmp_path / "logs" / "app.log"
    log_file.parent.mkdir()
    nanos = time.time_ns() - 60 * 1_000_000_000
    trace, span = f"trace_{nanos}", f"span_{nanos}"
    config = pipeline_config(
        tmp_path,
        jaeger.otlp_http_endpoint,
        paths=[str(log_file)],
        spans__format="jobfirst",
        spans__orphan_timeout="1s",
        spans__rotate_wait="3s",
        service__name=service_name,
    )
    async with running_pipeline(config) as pipeline:
        append(log_file, jobfirst_line("Span started", trace, span, user_id=7))
        append(log_file, jobfirst_line("Span event added", trace, span, event_name="queued"))
        await eventually(lambda: pipeline.summary()["lines_read"] >= 2, what="the start read")
        os.replace(log_file, log_file.with_name("app.log.1"))
        append(log_file, jobfirst_line("Span event added", trace, span, event_name="picked up"))
        append(log_file, jobfirst_line("Span ended", trace, span, duration="2s", status=0))
        await asyncio.to_thread(jaeger.query.wait_for_spans, service_name, 1, timeout=20)

    async with running_pipeline(config) as pipeline:
        # A copy coming back would do so once the rotated file is let go (rotate_wait) and
        # its restored decoder expires what it holds (orphan_timeout). A marker span left open
        # after that goes the same way, later: once it is in Jaeger, a copy would be too.
        assert pipeline.tailer is not None
        tailer = pipeline.tailer
        await eventually(
            lambda: not any(f["rotated"] for f in tailer.status()["files"]),
            what="the rotated file let go",
        )
        marker_nanos = time.time_ns() - 30 * 1_000_000_000
        marker_trace, marker_span = f"trace_{marker_nanos}", f"span_{marker_nanos}"
        append(log_file, jobfirst_line("Span started", marker_trace, marker_span))
        marker = await asyncio.to_thread(
            eventually_sync,
            lambda: jaeger.query.trace(w3c_trace_id(marker_trace).hex()),
            timeout=20,
            what="the marker span in Jaeger",
        )
    assert "sidecar.incomplete" in marker.spans[0].tags
    stored = await asyncio.to_thread(jaeger.query.trace, w3c_trace_id(trace).hex())
    assert stored is not None
    (only,) = stored.spans
    assert only.tags["user_id"] == 7, "completed with the start line's fields"
    assert "sidecar.incomplete" not in only.tags
    assert [log.fields["event"] for log in only.logs] == ["queued", "picked up"]
    assert only.duration_us == 2_000_000
