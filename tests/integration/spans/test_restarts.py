"""`sidecar-agent run` as a real process, killed and restarted while spans are being written.

kill -9 at random points must lose nothing (every span written ends up in Jaeger); SIGTERM
then restart must re-send nothing (the second run, pointed at a recording receiver double,
receives only what was written after the restart).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.otlp_receiver import FaultInjectingOtlpReceiver
from tests.harness import Jaeger
from tests.harness.agent_process import AgentProcess
from tests.harness.eventually import eventually_sync
from tests.integration.spans.helpers import append, span_id_of, span_json

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPANS_PER_TRACE = 20


def agent_settings(logs: Path, endpoint: str) -> dict[str, str]:
    return {
        "SIDECAR_MESSAGES_ENABLED": "false",
        "SIDECAR_PROXY_ENABLED": "false",
        "SIDECAR_SPANS_PATHS": str(logs / "*.log"),
        "SIDECAR_SPANS_POLL_INTERVAL": "100ms",
        "SIDECAR_SPANS_CHECKPOINT_INTERVAL": "200ms",
        "SIDECAR_EXPORT_ENDPOINT": endpoint,
        "SIDECAR_EXPORT_BATCH_LINGER": "50ms",
        "SIDECAR_EXPORT_RETRY_INITIAL_INTERVAL": "100ms",
        "SIDECAR_EXPORT_RETRY_MAX_INTERVAL": "1s",
    }


def line(index: int, service: str) -> bytes:
    # Several spans per trace keeps the Jaeger queries small.
    return span_json(index, service, salt=index // SPANS_PER_TRACE)


class SteadyWriter:
    """Appends span lines at a steady rate from a thread, like a service logging."""

    def __init__(self, path: Path, service: str, total: int, per_second: float) -> None:
        self.path, self.service, self.total = path, service, total
        self.interval = 10 / per_second  # ten lines per write
        self.written = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        while self.written < self.total:
            count = min(10, self.total - self.written)
            lines = [line(self.written + i, self.service) for i in range(count)]
            append(self.path, b"".join(lines))
            self.written += count
            time.sleep(self.interval)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the writer did not finish"


def stored_span_ids(jaeger: Jaeger, service: str, count: int) -> set[str]:
    spans = jaeger.query.wait_for_spans(service, count, timeout=30)
    return {span.span_id for span in spans}


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    return directory


def test_kill_9_at_random_points_while_writing_loses_nothing(
    tmp_path: Path, logs: Path, jaeger: Jaeger, service_name: str
) -> None:
    rng = random.Random(20241128)
    total = 5000
    settings = agent_settings(logs, jaeger.otlp_http_endpoint)
    writer = SteadyWriter(logs / "app.log", service_name, total, per_second=1000).start()
    kills = 0
    while writer.written < total:
        agent = AgentProcess(tmp_path, settings)
        agent.start()
        time.sleep(rng.uniform(0.2, 1.2))
        agent.kill()
        kills += 1
    writer.join(10)
    final = AgentProcess(tmp_path, settings)
    final.start()
    try:
        found = stored_span_ids(jaeger, service_name, total)
    finally:
        assert final.terminate() == 0
    assert kills >= 3, "the agent must have been killed while lines were being written"
    expected = {span_id_of(i, i // SPANS_PER_TRACE) for i in range(total)}
    assert expected - found == set(), f"{len(expected - found)} spans lost after {kills} kill -9"


def test_sigterm_then_restart_resends_nothing(
    tmp_path: Path, logs: Path, jaeger: Jaeger, service_name: str
) -> None:
    log_file = logs / "app.log"
    writer = SteadyWriter(log_file, service_name, 1000, per_second=2000).start()
    first = AgentProcess(tmp_path, agent_settings(logs, jaeger.otlp_http_endpoint))
    first.start()
    writer.join(10)
    assert len(stored_span_ids(jaeger, service_name, 1000)) == 1000
    assert first.terminate() == 0
    [stopped] = [entry for entry in first.log_lines() if entry["msg"] == "agent stopped"]
    assert stopped["summary"]["spans"]["spans_exported"] == 1000
    assert stopped["summary"]["spans"]["spans_queued"] == 0

    with FaultInjectingOtlpReceiver() as recorder:
        second = AgentProcess(tmp_path, agent_settings(logs, recorder.endpoint))
        second.start()
        # Ten new lines mark the end: a re-send from the restart would come before them.
        append(log_file, b"".join(line(i, service_name) for i in range(1000, 1010)))
        eventually_sync(lambda: len(recorder.accepted_spans()) >= 10, what="the new spans")
        eventually_sync(
            lambda: second.metrics().get("sidecar_spans_exported_total", 0) >= 10,
            what="the export counted",
        )
        metrics = second.metrics()
        assert second.terminate() == 0
    sent = [span.span_id.hex() for _, span in recorder.accepted_spans()]
    # Nothing before them: a graceful restart re-sends nothing.
    assert sent == [span_id_of(i, i // SPANS_PER_TRACE) for i in range(1000, 1010)]
    assert metrics["sidecar_spans_exported_total"] == 10


@pytest.fixture
def own_jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    with Jaeger(tmp_path / "jaeger") as instance:
        yield instance


def test_jaeger_down_then_up_loses_nothing_and_readyz_says_why(
    tmp_path: Path, logs: Path, own_jaeger: Jaeger, service_name: str
) -> None:
    log_file = logs / "app.log"
    settings = agent_settings(logs, own_jaeger.otlp_http_endpoint)
    # Resource attributes as a Kubernetes Downward API env would pass them.
    settings["OTEL_RESOURCE_ATTRIBUTES"] = "k8s.pod.name=api-7f9c,k8s.namespace.name=jobs"
    agent = AgentProcess(tmp_path, settings)
    agent.start()
    try:
        append(log_file, b"".join(line(i, service_name) for i in range(200)))
        before = own_jaeger.query.wait_for_spans(service_name, 200, timeout=30)
        assert before[0].process_tags["k8s.pod.name"] == "api-7f9c"
        assert before[0].process_tags["k8s.namespace.name"] == "jobs"
        own_jaeger.stop()
        append(log_file, b"".join(line(i, service_name) for i in range(200, 700)))

        def queued() -> bool:
            health = _spans_health(agent)
            return not health["dependency_ok"] and health["details"]["spans_queued"] == 500

        eventually_sync(queued, timeout=15, what="500 spans queued while Jaeger is down")
        status, _ = agent.get("/readyz")
        assert status == 200, "buffering through an outage keeps the agent ready"
        reason = _spans_health(agent)["reason"]
        assert reason.startswith("otlp endpoint unreachable: ")
        assert "500 spans queued, oldest " in reason
        own_jaeger.start()  # memory storage: it comes back empty
        append(log_file, b"".join(line(i, service_name) for i in range(700, 800)))
        found = stored_span_ids(own_jaeger, service_name, 600)
        eventually_sync(lambda: _spans_health(agent)["dependency_ok"], timeout=10, what="recovery")
    finally:
        assert agent.terminate() == 0
    assert found == {span_id_of(i, i // SPANS_PER_TRACE) for i in range(200, 800)}


def _spans_health(agent: AgentProcess) -> dict[str, Any]:
    health: dict[str, Any] = agent.status()["health"]["spans"]
    return health
