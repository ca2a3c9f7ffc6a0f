from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.core.admin import AdminServer
from agent.core.lifecycle import Component, Health, TaskSupervisor, start_all, stop_all
from agent.core.metrics import Metrics
from tests.harness.eventually import eventually


class RecordingComponent:
    """A component that records the order of start/stop calls."""

    def __init__(self, name: str, log: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self._log = log
        self._fail_start = fail_start
        self.ready = False

    async def start(self) -> None:
        if self._fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self._log.append(f"start {self.name}")
        self.ready = True

    async def stop(self) -> None:
        self._log.append(f"stop {self.name}")
        self.ready = False

    def health(self) -> Health:
        return Health(ready=self.ready, state="running" if self.ready else "down", reason="test")

    def status(self) -> dict[str, Any]:
        return {}


async def test_start_failure_stops_what_started_in_reverse() -> None:
    log: list[str] = []
    parts: list[Component] = [
        RecordingComponent("sink", log),
        RecordingComponent("queue", log),
        RecordingComponent("source", log, fail_start=True),
    ]
    with pytest.raises(RuntimeError, match="source cannot start"):
        await start_all(parts)
    assert log == ["start sink", "start queue", "stop queue", "stop sink"]


async def test_stop_all_reports_components_that_overrun() -> None:
    class Stuck(RecordingComponent):
        async def stop(self) -> None:
            await asyncio.sleep(10)

    log: list[str] = []
    loop = asyncio.get_running_loop()
    late = await stop_all([Stuck("stuck", log), RecordingComponent("ok", log)], loop.time() + 0.1)
    assert late == ["stuck"]
    assert log == ["stop ok"]


async def test_failed_background_task_is_recorded_counted_and_calls_back() -> None:
    metrics = Metrics()
    supervisor = TaskSupervisor("spans", metrics)
    seen: list[BaseException] = []
    supervisor.on_failure(seen.append)

    async def boom() -> None:
        raise ValueError("disk on fire")

    task = supervisor.spawn("reader", boom())
    await asyncio.wait([task])
    await eventually(lambda: supervisor.failed, what="the done-callback")
    assert isinstance(seen[0], ValueError)
    health = supervisor.failure_health()
    assert not health.ready and "disk on fire" in health.reason
    text = metrics.render().decode()
    assert 'sidecar_background_task_failures_total{component="spans",task="reader"} 1.0' in text


async def test_supervisor_close_cancels_running_tasks() -> None:
    supervisor = TaskSupervisor("x", Metrics())
    task = supervisor.spawn("sleeper", asyncio.sleep(100))
    await supervisor.close(grace=1)
    assert task.cancelled()
    assert not supervisor.failed


async def test_readiness_names_each_component() -> None:
    log: list[str] = []
    up = RecordingComponent("spans", log)
    down = RecordingComponent("messages", log)
    await up.start()
    admin = AdminServer("127.0.0.1:0", Metrics(), lambda: [up, down])
    ready, body = admin.readiness()
    assert not ready
    assert body["components"]["spans"]["ready"] is True
    assert body["components"]["messages"] == {
        "ready": False,
        "state": "down",
        "dependency_ok": True,
        "reason": "test",
    }
    await down.start()
    assert admin.readiness()[0] is True
    admin.mark_stopping()
    ready, body = admin.readiness()
    assert not ready and body["reason"] == "shutting down"


async def test_dependency_outage_fails_readiness_only_when_strict() -> None:
    class Buffering(RecordingComponent):
        def health(self) -> Health:
            return Health(ready=True, state="degraded", reason="redis down", dependency_ok=False)

    parts: list[Component] = [Buffering("messages", [])]
    assert AdminServer("127.0.0.1:0", Metrics(), lambda: parts).readiness()[0] is True
    strict = AdminServer("127.0.0.1:0", Metrics(), lambda: parts, ready_requires_dependencies=True)
    assert strict.readiness()[0] is False


async def test_a_component_that_cannot_recover_fails_healthz_not_only_readyz() -> None:
    class Recovering(RecordingComponent):
        def health(self) -> Health:
            return Health(ready=False, state="recovering", reason="disk queue: write failed")

    class Broken(RecordingComponent):
        def health(self) -> Health:
            return Health(False, "failed", "disk queue: not recovering", alive=False)

    parts: list[Component] = [Recovering("messages", [])]
    admin = AdminServer("127.0.0.1:0", Metrics(), lambda: parts)
    # Recovering by itself: not ready, but a restart would not help.
    assert admin.liveness() == (True, {"status": "ok"})
    assert admin.readiness()[0] is False
    parts.append(Broken("spans", []))
    alive, body = admin.liveness()
    assert alive is False
    assert body["components"]["spans"]["reason"] == "disk queue: not recovering"
    assert "messages" not in body["components"]


async def test_a_dead_background_task_fails_liveness() -> None:
    supervisor = TaskSupervisor("messages", Metrics())

    async def dies() -> None:
        raise OSError("EMFILE")

    task = supervisor.spawn("complete", dies())
    await asyncio.wait([task])
    assert supervisor.failure_health().alive is False
