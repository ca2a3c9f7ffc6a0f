"""Sampling in the pipeline: OTel-compatible decisions, sampled-out spans counted and treated
as delivered, so the checkpoint still reaches the end of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.spans.delivery.book import checkpoint_path
from agent.spans.delivery.checkpoint import CheckpointStore
from agent.spans.sampling import TraceIdRatioSampler
from tests.doubles.otlp_receiver import FaultInjectingOtlpReceiver
from tests.harness.eventually import eventually
from tests.integration.spans.helpers import (
    append,
    pipeline_config,
    running_pipeline,
    span_json,
)

pytestmark = pytest.mark.integration


async def test_traceidratio_keeps_what_the_sdk_would_and_checkpoints_past_the_rest(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "logs" / "app.log"
    log_file.parent.mkdir()
    # Trace IDs spread over the whole 64-bit range the ratio sampler looks at.
    lines = [
        span_json(i, "svc", trace_id=f"{(i + 1) * 0x9E3779B97F4A7C15 % 2**128:032x}")
        for i in range(400)
    ]
    append(log_file, b"".join(lines))
    sampler = TraceIdRatioSampler(0.25)
    expected = {
        i
        for i in range(400)
        if sampler.should_sample((((i + 1) * 0x9E3779B97F4A7C15) % 2**128).to_bytes(16, "big"))
    }
    assert 50 < len(expected) < 150
    with FaultInjectingOtlpReceiver() as receiver:
        config = pipeline_config(
            tmp_path, receiver.endpoint, spans__sampler="traceidratio", spans__sampler_arg="0.25"
        )
        async with running_pipeline(config) as pipeline:
            await eventually(lambda: pipeline.outbound.spans_decoded == 400, what="all decoded")
            await eventually(
                lambda: len(receiver.accepted_spans()) == len(expected), what="sampled spans"
            )
            summary = pipeline.summary()
    seqs = {
        attr.value.int_value
        for _, span in receiver.accepted_spans()
        for attr in span.attributes
        if attr.key == "seq"
    }
    assert seqs == expected
    assert summary["spans_sampled_out"] == 400 - len(expected)
    saved = CheckpointStore(checkpoint_path(Path(config.data_dir))).load()
    assert [c.offset for c in saved.values()] == [log_file.stat().st_size]
