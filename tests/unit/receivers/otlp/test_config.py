"""receivers.otlp settings: checked at start with errors that say what to do."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.config.load import ConfigError, load_config
from agent.config.tree import Config
from agent.config.validate import GRPC_MISSING, validate
from agent.core.metrics import Metrics
from agent.receivers.otlp.receiver import GrpcUnavailableError, OtlpReceiver
from agent.spans.pipeline import SpanPipeline


def config_of(tmp_path: Path, **settings: str) -> Config:
    values = {"data_dir": str(tmp_path), "export.endpoint": "http://jaeger:4318/v1/traces"}
    values.update({key.replace("__", "."): value for key, value in settings.items()})
    return load_config(environ={}, cli_overrides=[f"{k}={v}" for k, v in values.items()])


def problems_of(tmp_path: Path, **settings: str) -> list[str]:
    """What loading (which validates) says about these settings."""
    try:
        config_of(tmp_path, **settings)
    except ConfigError as error:
        return error.problems
    return []


def test_off_by_default_and_on_loopback() -> None:
    otlp = Config().receivers.otlp
    assert not otlp.enabled and not otlp.grpc.enabled
    assert (otlp.http.listen, otlp.grpc.listen) == ("127.0.0.1:4318", "127.0.0.1:4317")


def test_env_names_follow_the_key_path(tmp_path: Path) -> None:
    config = load_config(
        environ={
            "SIDECAR_RECEIVERS_OTLP_ENABLED": "true",
            "SIDECAR_RECEIVERS_OTLP_HTTP_LISTEN": "0.0.0.0:14318",
            "SIDECAR_RECEIVERS_OTLP_MAX_BODY_BYTES": "8MiB",
            "SIDECAR_DATA_DIR": str(tmp_path),
        },
        cli_overrides=[],
    )
    otlp = config.receivers.otlp
    assert otlp.enabled and otlp.http.listen == "0.0.0.0:14318"
    assert otlp.max_body_bytes == 8 * 1024**2


@pytest.mark.parametrize(
    "endpoint",
    ["http://localhost:4318/v1/traces", "http://127.0.0.1:4318/v1/traces"],
)
def test_exporting_to_its_own_receiver_is_refused(tmp_path: Path, endpoint: str) -> None:
    (problem,) = problems_of(tmp_path, receivers__otlp__enabled="true", export__endpoint=endpoint)
    assert problem.startswith("receivers.otlp.http.listen: '127.0.0.1:4318' is where")
    assert "point export.endpoint at Jaeger" in problem


def test_other_ports_and_hosts_are_fine(tmp_path: Path) -> None:
    assert validate(config_of(tmp_path, receivers__otlp__enabled="true")) == []
    config = config_of(
        tmp_path,
        receivers__otlp__enabled="true",
        receivers__otlp__http__listen="127.0.0.1:14318",
        export__endpoint="http://localhost:4318/v1/traces",
    )
    assert validate(config) == []


def test_needs_the_span_pipeline(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, receivers__otlp__enabled="true", spans__enabled="false")
    assert any("set spans.enabled too" in problem for problem in problems)


def test_grpc_without_the_extra_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_grpc(name: str, *args: Any) -> Any:
        return None if name == "grpc" else real_find_spec(name, *args)

    config = config_of(tmp_path, receivers__otlp__enabled="true")
    otlp = replace(config.receivers.otlp, grpc=replace(config.receivers.otlp.grpc, enabled=True))
    config = replace(config, receivers=replace(config.receivers, otlp=otlp))
    assert validate(config) == []  # with grpcio installed (the dev extras)
    monkeypatch.setattr(importlib.util, "find_spec", without_grpc)
    assert validate(config) == [GRPC_MISSING]
    assert "pip install 'sidecar-agent[grpc]'" in GRPC_MISSING
    pipeline = SpanPipeline(config, Metrics(), tmp_path)
    with pytest.raises(GrpcUnavailableError, match=r"pip install 'sidecar-agent\[grpc\]'"):
        OtlpReceiver(config.receivers.otlp, pipeline, Metrics())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("receivers__otlp__http__listen", "nonsense", "is not host:port"),
        ("receivers__otlp__max_pending_spans", "0", "must be at least 1"),
        ("receivers__otlp__max_body_bytes", "10", "must be at least 1024"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, key: str, value: str, message: str) -> None:
    problems = problems_of(tmp_path, **{key: value})
    assert any(message in problem for problem in problems), problems
