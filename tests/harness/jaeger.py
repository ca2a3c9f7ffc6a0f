"""The real Jaeger v2 binary (built by scripts/build-jaeger) with in-memory storage.

Every listener gets its own free loopback port, and the collector's own metrics are off, so
several Jaegers (parallel test runs, other checkouts) never collide on 4317/4318/16686/8888.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness.errors import HarnessError
from tests.harness.jaeger_query import JaegerQuery
from tests.harness.ports import LOOPBACK, free_port, release_port
from tests.harness.process import ManagedProcess, executable_or_fail
from tests.harness.server import LoopbackServer

JAEGER_VERSION = "v1.76.0"
_BUILD_HINT = "Build it with scripts/build-jaeger (scripts/test does) or set JAEGER_BIN."


def jaeger_cache_path() -> Path:
    """Where scripts/build-jaeger puts the binary (keep the two in step)."""
    cache_root = os.environ.get("SIDECAR_CACHE_DIR")
    if not cache_root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_root = str(Path(xdg) / "sidecar-agent")
    return Path(cache_root) / f"jaeger-{JAEGER_VERSION}"


def find_jaeger_binary() -> Path:
    """JAEGER_BIN if set, else the build cache; a clear HarnessError if neither is there."""
    override = os.environ.get("JAEGER_BIN")
    if override:
        return executable_or_fail(override, f"(from JAEGER_BIN) {_BUILD_HINT}")
    path = jaeger_cache_path()
    if not path.exists():
        raise HarnessError(f"Jaeger binary not found at {path}. {_BUILD_HINT}")
    return executable_or_fail(path, _BUILD_HINT)


@dataclass(frozen=True)
class JaegerPorts:
    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health: int

    @classmethod
    def claim(cls) -> JaegerPorts:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())

    def release(self) -> None:
        for port in astuple(self):
            release_port(port)


def _endpoint(port: int) -> dict[str, str]:
    return {"endpoint": f"{LOOPBACK}:{port}"}


def render_config(ports: JaegerPorts, max_traces: int) -> dict[str, Any]:
    """A Jaeger v2 (OpenTelemetry Collector) config: OTLP in, memory store, query API out."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            # No batch processor: spans become queryable as soon as the export returns.
            "pipelines": {
                "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]}
            },
            # Off, or every Jaeger would try to serve its own metrics on :8888.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": _endpoint(ports.health)},
            "jaeger_query": {
                # Else the query service traces itself over OTLP to localhost:4318, which may
                # be the agent under test.
                "enable_tracing": False,
                "storage": {"traces": "memstore"},
                "http": _endpoint(ports.query_http),
                "grpc": _endpoint(ports.query_grpc),
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": max_traces}}}},
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": _endpoint(ports.otlp_grpc),
                    "http": _endpoint(ports.otlp_http),
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def _environment_without_otel() -> dict[str, str]:
    # The collector reads OTEL_* itself (exporters, resource); the test run's must not leak in.
    return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}


def _answers(request: urllib.request.Request | str) -> bool:
    try:
        with urllib.request.urlopen(request, timeout=0.5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class Jaeger(LoopbackServer):
    """One Jaeger process; stop/start/restart keep its ports, so clients see an outage. It is
    ready when both the query API and the OTLP/HTTP receiver answer. Memory storage: stored
    spans are gone after a restart."""

    name = "Jaeger"
    start_timeout = 60.0

    def __init__(
        self, workdir: Path, *, binary: Path | None = None, max_traces: int = 100_000
    ) -> None:
        super().__init__(workdir)
        self.max_traces = max_traces
        self._binary = binary if binary is not None else find_jaeger_binary()
        self.ports = JaegerPorts.claim()

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.otlp_http}/v1/traces"

    @property
    def query_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.query_http}"

    @property
    def query(self) -> JaegerQuery:
        return JaegerQuery(self.query_url)

    @property
    def config_path(self) -> Path:
        return self.workdir / "jaeger.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "jaeger.log"

    def _start_once(self, timeout: float) -> None:
        config = render_config(self.ports, self.max_traces)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [str(self._binary), "--config", f"file:{self.config_path}"]
        process = ManagedProcess(
            "jaeger", argv, self.log_path, env=_environment_without_otel(), cwd=self.workdir
        )
        self._process = process
        process.start_and_wait(self.is_ready, timeout=timeout, what="Jaeger")

    def _move_to_fresh_ports(self) -> None:
        self.ports.release()
        self.ports = JaegerPorts.claim()

    def is_ready(self) -> bool:
        if not _answers(f"{self.query_url}/api/services"):
            return False
        # An empty ExportTraceServiceRequest is valid protobuf: proves the receiver is up.
        empty_export = urllib.request.Request(
            self.otlp_http_endpoint,
            data=b"",
            headers={"Content-Type": "application/x-protobuf"},
            method="POST",
        )
        return _answers(empty_export)

    def close(self) -> None:
        """Stop and release the ports. Idempotent."""
        self.stop()
        self.ports.release()
