"""The span pipeline in-process against the FaultInjectingOtlpReceiver double: faults a real
Jaeger cannot show on demand (503 + Retry-After, 400, 429, hangs), graceful restarts that must
re-send nothing, and a full disk queue that must pause reading instead of dropping."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config.tree import Config
from agent.spans.delivery.book import checkpoint_path
from agent.spans.delivery.checkpoint import CheckpointStore
from tests.doubles.otlp_receiver import Fault, FaultInjectingOtlpReceiver
from tests.harness.eventually import eventually
from tests.integration.spans.helpers import (
    append,
    dead_letters,
    pipeline_config,
    running_pipeline,
    span_json,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[FaultInjectingOtlpReceiver]:
    with FaultInjectingOtlpReceiver() as double:
        yield double


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path / "logs" / "app.log"


def saved_offsets(config: Config) -> list[int]:
    store = CheckpointStore(checkpoint_path(Path(config.data_dir)))
    return [checkpoint.offset for checkpoint in store.load().values()]


def received_seqs(receiver: FaultInjectingOtlpReceiver) -> list[int]:
    return [
        attr.value.int_value
        for _, span in receiver.accepted_spans()
        for attr in span.attributes
        if attr.key == "seq"
    ]


def more_than_the_queue_holds(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver, *, max_in_flight: int
) -> Config:
    """A failing endpoint (503), a 1 MiB disk queue, and 4000 spans in the log that do not fit
    in it: random payloads, so that gzip cannot shrink their 3 MB below the queue's size."""
    receiver.always(Fault.http(503))
    config = pipeline_config(
        tmp_path,
        receiver.endpoint,
        export__queue__max_bytes="1MiB",
        export__max_request_bytes="16KiB",
        export__batch__max_spans="20",
        export__max_in_flight=str(max_in_flight),
    )
    lines = [span_json(i, "svc", payload=os.urandom(300).hex()) for i in range(4000)]
    append(log_file, b"".join(lines))
    return config


async def test_spans_arrive_once_and_a_graceful_restart_resends_nothing(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    config = pipeline_config(tmp_path, receiver.endpoint)
    append(log_file, b"".join(span_json(i, "svc") for i in range(200)))
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: len(receiver.accepted_spans()) == 200, what="200 spans")
        assert pipeline.health().dependency_ok
    assert saved_offsets(config) == [log_file.stat().st_size]
    requests_before = len(receiver.requests)

    append(log_file, b"".join(span_json(i, "svc") for i in range(200, 250)))
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: len(receiver.accepted_spans()) == 250, what="50 more spans")
        # A later marker line: had the restart re-sent anything, it would have come before.
        append(log_file, span_json(250, "svc"))
        await eventually(lambda: len(receiver.accepted_spans()) == 251, what="the marker span")
        assert pipeline.exporter.spans_exported == 51
    assert sorted(received_seqs(receiver)) == list(range(251))
    assert len(receiver.requests) > requests_before


async def test_503_with_retry_after_is_honoured_and_nothing_is_lost(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.http(503, retry_after="1", message="busy"))
    config = pipeline_config(tmp_path, receiver.endpoint)
    append(log_file, b"".join(span_json(i, "svc") for i in range(20)))
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: len(receiver.accepted_spans()) == 20, what="20 spans")
        assert pipeline.sender.retries == 1
    first, second = receiver.requests[0], receiver.requests[1]
    assert first.answered == 503
    assert second.at - first.at >= 0.95, "the retry waited for Retry-After"
    assert received_seqs(receiver) == list(range(20))


async def test_429_backs_off_then_delivers_in_order(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(*[Fault.http(429)] * 3)
    config = pipeline_config(tmp_path, receiver.endpoint, export__max_in_flight="1")
    append(log_file, b"".join(span_json(i, "svc") for i in range(30)))
    async with running_pipeline(config):
        await eventually(lambda: len(receiver.accepted_spans()) == 30, what="30 spans")
    times = [r.at for r in receiver.requests[:4]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [r.answered for r in receiver.requests[:4]] == [429, 429, 429, 200]
    assert gaps[1] >= 0.05 and gaps[2] >= 0.08, f"backoff must grow: {gaps}"
    assert received_seqs(receiver) == list(range(30))


async def test_400_is_dead_lettered_with_the_server_message_and_flow_continues(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.http(400, message="invalid span: name too long"))
    config = pipeline_config(tmp_path, receiver.endpoint)
    append(log_file, b"".join(span_json(i, "svc") for i in range(10)))
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: pipeline.dead_letters.written == 1, what="a dead letter")
        append(log_file, b"".join(span_json(i, "svc") for i in range(10, 15)))
        await eventually(lambda: len(receiver.accepted_spans()) == 5, what="later spans")
        assert pipeline.health().dependency_ok, "a 400 is not an outage"
    [dead] = dead_letters(config)
    assert dead["reason"] == "export_rejected"
    assert "invalid span: name too long" in dead["detail"]
    assert dead["spans"] == 10 and dead["raw_b64"]
    assert saved_offsets(config) == [log_file.stat().st_size]


async def test_a_hanging_receiver_times_out_and_the_batch_is_retried(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.hang(3))
    config = pipeline_config(tmp_path, receiver.endpoint, export__timeout="500ms")
    append(log_file, b"".join(span_json(i, "svc") for i in range(10)))
    started = time.monotonic()
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: len(receiver.accepted_spans()) >= 10, what="the retried batch")
        assert "timed out" in pipeline.sender.status().get("last_error", "timed out")
    assert time.monotonic() - started < 3, "the client gave up on the hang, it did not wait it out"
    assert sorted(set(received_seqs(receiver))) == list(range(10))


async def test_outage_spills_to_disk_reports_it_and_drains_in_order(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.always(Fault.http(503))
    config = pipeline_config(
        tmp_path, receiver.endpoint, export__max_in_flight="1", export__batch__max_spans="25"
    )
    async with running_pipeline(config) as pipeline:
        for chunk in range(4):
            append(
                log_file, b"".join(span_json(i, "svc") for i in range(chunk * 50, chunk * 50 + 50))
            )
            await asyncio.sleep(0.1)
        await eventually(lambda: pipeline.sender.queue_depth()[1] == 200, what="200 spans queued")
        health = pipeline.health()
        assert health.ready and not health.dependency_ok
        assert "HTTP 503" in health.reason and "200 spans queued" in health.reason
        await eventually(
            lambda: saved_offsets(config) == [log_file.stat().st_size],
            what="the checkpoint to move past data that is safe in the disk queue",
        )
        receiver.always(Fault())
        await eventually(lambda: len(receiver.accepted_spans()) == 200, what="the backlog")
        await eventually(lambda: pipeline.health().dependency_ok, what="recovery")
    assert received_seqs(receiver) == list(range(200)), "order per file is kept"


async def test_full_queue_pauses_reading_and_loses_nothing(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    config = more_than_the_queue_holds(tmp_path, log_file, receiver, max_in_flight=1)
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: pipeline.sender.waiting_for_space, what="a full queue")
        assert pipeline.health().state == "backpressure"
        assert "reading paused" in pipeline.health().reason
        assert pipeline.tailer is not None
        behind = pipeline.tailer.status()["bytes_behind"]
        assert behind > 0, "the rest stays in the file"
        receiver.always(Fault())
        await eventually(lambda: len(receiver.accepted_spans()) >= 4000, timeout=30, what="all")
    assert received_seqs(receiver) == list(range(4000))


async def test_stop_with_a_full_queue_is_prompt_and_a_restart_delivers_everything(
    tmp_path: Path, log_file: Path, receiver: FaultInjectingOtlpReceiver
) -> None:
    config = more_than_the_queue_holds(tmp_path, log_file, receiver, max_in_flight=2)
    async with running_pipeline(config) as pipeline:
        await eventually(lambda: pipeline.sender.waiting_for_space, what="a full queue")
        stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 3, "nothing to wait for while the queue is full"
    receiver.always(Fault())
    async with running_pipeline(config):
        # Distinct spans: replays after the restart may repeat some (bounded duplicates).
        await eventually(lambda: len(set(received_seqs(receiver))) >= 4000, timeout=30, what="all")
    assert sorted(set(received_seqs(receiver))) == list(range(4000)), "nothing lost"
