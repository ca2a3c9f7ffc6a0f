"""Which pipelines a config asks for, built but not started (the agent starts them)."""

from __future__ import annotations

from pathlib import Path

from agent.config.tree import Config
from agent.core.lifecycle import Component
from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.spans.pipeline import SpanPipeline


def build_pipelines(config: Config, metrics: Metrics, data_dir: Path) -> list[Component]:
    """Each enabled pipeline as one Component; the span and message pipelines register here."""
    pipelines: list[Component] = []
    if config.spans.enabled:
        pipelines.append(SpanPipeline(config, metrics, data_dir))
    if config.messages.enabled:
        # Its own spans (publish, delivery) go out through the span pipeline's exporter,
        # which starts before and stops after it.
        spans = next((p for p in pipelines if isinstance(p, SpanPipeline)), None)
        pipelines.append(MessagePipeline(config, metrics, data_dir, span_pipeline=spans))
    return pipelines
