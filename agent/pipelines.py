"""Which pipelines a config asks for, built but not started (the agent starts them)."""

from __future__ import annotations

from pathlib import Path

from agent.config.tree import Config
from agent.core.lifecycle import Component
from agent.core.metrics import Metrics
from agent.messages.pipeline import MessagePipeline
from agent.spans.export.ownspans import OwnSpans
from agent.spans.pipeline import SpanPipeline


def build_pipelines(config: Config, metrics: Metrics, data_dir: Path) -> list[Component]:
    """Each enabled pipeline as one Component; the span and message pipelines register here."""
    pipelines: list[Component] = []
    spans = SpanPipeline(config, metrics, data_dir) if config.spans.enabled else None
    if spans is not None:
        pipelines.append(spans)
    if config.messages.enabled:
        # The message pipeline's own spans (publish, delivery) go out through the span
        # pipeline's exporter, which starts before and stops after it.
        own_spans = (
            OwnSpans(config, spans.exporter, spans.dead_letters, metrics)
            if spans is not None and config.messages.trace_spans
            else None
        )
        pipelines.append(MessagePipeline(config, metrics, data_dir, own_spans=own_spans))
    return pipelines
