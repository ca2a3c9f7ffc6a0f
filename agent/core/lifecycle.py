"""One lifecycle contract for every component, and a supervisor for background tasks.

`start()` returns quickly (long work goes to supervised tasks); `stop()` is idempotent and safe
before start. A component reports its own `health()`; /readyz is the conjunction of them all.
A background task that dies is never silent: the supervisor logs it, counts it, marks the owning
component failed (readiness flips) and calls the owner's failure hook so pending work is failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.core.metrics import Metrics

log = logging.getLogger("agent.lifecycle")


@dataclass(frozen=True, slots=True)
class Health:
    """What /readyz says about one component.

    `ready` means the component can take work (it may be buffering); `dependency_ok` is False
    while its downstream (Redis, the OTLP endpoint) is unreachable. By default a dependency
    outage leaves the agent ready, because the durable buffer is doing its job and failing the
    pod's readiness would cut the application's traffic over a tracing backend outage;
    `admin.ready_requires_dependencies` makes /readyz strict.

    `alive` is False only when the component cannot recover by itself (a background task died,
    a disk queue that stays broken): /healthz then fails so the orchestrator restarts the agent.
    """

    ready: bool
    state: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    dependency_ok: bool = True
    alive: bool = True

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ready": self.ready,
            "state": self.state,
            "dependency_ok": self.dependency_ok,
        }
        if not self.alive:
            body["alive"] = False
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        return body


STARTING = Health(ready=False, state="starting")
STOPPED = Health(ready=False, state="stopped")


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> Health: ...

    def status(self) -> dict[str, Any]: ...


class TaskSupervisor:
    """Owns background tasks: keeps references, records failures, cancels on close."""

    def __init__(self, owner: str, metrics: Metrics) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failures = metrics.counter(
            "background_task_failures_total",
            "Background tasks that ended with an error.",
            ("component", "task"),
        )
        self.failure: BaseException | None = None
        self.failed_task = ""
        self._on_failure: list[Callable[[BaseException], None]] = []

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        self._on_failure.append(callback)

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        name = task.get_name()
        self.failure = error
        self.failed_task = name
        self._failures.labels(self.owner, name.partition(":")[2]).inc()
        log.error(
            "background task failed",
            extra={"task": name, "error": repr(error)},
            exc_info=(type(error), error, error.__traceback__),
        )
        for callback in self._on_failure:
            callback(error)

    @property
    def failed(self) -> bool:
        return self.failure is not None

    def failure_health(self) -> Health:
        # Nothing restarts a dead task but a restart of the agent.
        return Health(
            ready=False,
            state="failed",
            reason=f"task {self.failed_task} failed: {self.failure!r}",
            alive=False,
        )

    async def close(self, grace: float = 5.0) -> None:
        """Cancel what is still running and wait (bounded) for it to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)


async def stop_all(components: list[Component], deadline: float) -> list[str]:
    """Stop in the given order (upstream first); returns the names that overran the deadline."""
    loop = asyncio.get_running_loop()
    late: list[str] = []
    for component in components:
        remaining = max(0.1, deadline - loop.time())
        try:
            await asyncio.wait_for(component.stop(), timeout=remaining)
        except TimeoutError:
            late.append(component.name)
            log.error("component did not stop in time", extra={"component": component.name})
        except Exception:
            late.append(component.name)
            log.exception("component failed to stop", extra={"component": component.name})
    return late


async def start_all(components: list[Component]) -> None:
    """Start in the given order (downstream first); on failure stop what started, re-raise."""
    started: list[Component] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
    except BaseException:
        loop = asyncio.get_running_loop()
        await stop_all(list(reversed(started)), loop.time() + 10)
        raise
