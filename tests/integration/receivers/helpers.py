"""Shared by the receiver tests: a span pipeline with the OTLP receiver in front, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.config.load import load_config
from agent.config.tree import Config
from agent.core.metrics import Metrics
from agent.receivers.otlp.receiver import OtlpReceiver
from agent.spans.pipeline import SpanPipeline


def receiver_config(tmp_path: Path, endpoint: str, **settings: str) -> Config:
    values = {
        "data_dir": str(tmp_path / "data"),
        "receivers.otlp.enabled": "true",
        "receivers.otlp.http.listen": "127.0.0.1:0",
        "receivers.otlp.grpc.listen": "127.0.0.1:0",
        "export.endpoint": endpoint,
        "export.timeout": "2s",
        "export.batch.linger": "20ms",
        "export.retry.initial_interval": "50ms",
        "export.retry.max_interval": "300ms",
        "shutdown_timeout": "8s",
    }
    values.update({key.replace("__", "."): value for key, value in settings.items()})
    return load_config(environ={}, cli_overrides=[f"{k}={v}" for k, v in values.items()])


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
