"""Which pipelines a config asks for, built but not started (the agent starts them)."""

from __future__ import annotations

from pathlib import Path

from agent.config.tree import Config
from agent.core.lifecycle import Component
from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.receivers.otlp.receiver import OtlpReceiver
from agent.spans.pipeline import SpanPipeline


def build_pipelines(config: Config, metrics: Metrics, data_dir: Path) -> list[Component]:
    """Each enabled pipeline as one Component; the span and message pipelines register here.
    Receivers come after the pipeline they feed: started after it, stopped before it."""
    pipelines: list[Component] = []
    span_pipeline: SpanPipeline | None = None
    if config.spans.enabled:
        span_pipeline = SpanPipeline(config, metrics, data_dir)
        pipelines.append(span_pipeline)
        if config.receivers.otlp.enabled:
            pipelines.append(OtlpReceiver(config.receivers.otlp, span_pipeline, metrics))
    if config.messages.enabled:
        # Its own spans (publish, delivery) go out through the span pipeline's exporter,
        # which starts before and stops after it.
        pipelines.append(MessagePipeline(config, metrics, data_dir, span_pipeline=span_pipeline))
    return pipelines
