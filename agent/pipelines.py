"""Which pipelines a config asks for, built but not started (the agent starts them)."""

from __future__ import annotations

from pathlib import Path

from agent.config import Config
from agent.core.lifecycle import Component
from agent.core.metrics import Metrics


def build_pipelines(config: Config, metrics: Metrics, data_dir: Path) -> list[Component]:
    """Each enabled pipeline as one Component; the span and message pipelines register here."""
    pipelines: list[Component] = []
    del config, metrics, data_dir  # the pipelines arrive with their issues
    return pipelines
