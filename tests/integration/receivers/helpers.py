"""Shared by the receiver tests: a span pipeline with the OTLP receiver in front, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.config.tree import Config
from agent.core.metrics import Metrics
from agent.receivers.otlp.receiver import OtlpReceiver
from agent.spans.pipeline import SpanPipeline
from tests.integration.spans.helpers import pipeline_config


def receiver_config(tmp_path: Path, endpoint: str, **settings: str) -> Config:
    """The span pipeline's test settings (no files to tail), with the receiver on free ports."""
    receiver = {
        "spans__paths": "",
        "receivers__otlp__enabled": "true",
        "receivers__otlp__http__listen": "127.0.0.1:0",
        "receivers__otlp__grpc__listen": "127.0.0.1:0",
    }
    return pipeline_config(tmp_path, endpoint, **{**receiver, **settings})


@dataclass
class Running:
    pipeline: SpanPipeline
    receiver: OtlpReceiver
    metrics: Metrics

    @property
    def url(self) -> str:
        return f"http://{self.receiver.http.address}/v1/traces"


@asynccontextmanager
async def running_receiver(config: Config) -> AsyncIterator[Running]:
    metrics = Metrics()
    pipeline = SpanPipeline(config, metrics, Path(config.data_dir))
    receiver = OtlpReceiver(config.receivers.otlp, pipeline, metrics)
    await pipeline.start()
    await receiver.start()
    try:
        yield Running(pipeline, receiver, metrics)
    finally:
        await receiver.stop()
        await pipeline.stop()
