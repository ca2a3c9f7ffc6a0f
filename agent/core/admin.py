"""Admin HTTP server: /healthz, /readyz, /metrics (Prometheus text) and /status (JSON).

/healthz answers 200 while the process and its event loop are alive and no component has failed
beyond repair (a dead background task, a disk queue that did not recover); then 503 with the
components that did, so the orchestrator restarts the agent. /readyz answers 200 only
when every enabled component says it is ready (and, with `ready_requires_dependencies`, every
dependency is reachable); its body names each component's state and why (which dependency is
down, how much is buffered).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from agent import __version__
from agent.config.tree import AdminConfig
from agent.core.http import ConnectionLimits, ServerRunner
from agent.core.lifecycle import Component, Health
from agent.core.metrics import CONTENT_TYPE, Metrics

ComponentSource = Callable[[], list[Component]]


class AdminServer:
    name = "admin"

    def __init__(
        self,
        listen: str,
        metrics: Metrics,
        components: ComponentSource,
        *,
        ready_requires_dependencies: bool = False,
        limits: ConnectionLimits | None = None,
        redact: Callable[[str], str] = str,
    ) -> None:
        self._redact = redact
        if limits is None:
            defaults = AdminConfig()
            limits = ConnectionLimits(defaults.max_connections, defaults.idle_timeout)
        self._metrics = metrics
        self._strict = ready_requires_dependencies
        self._components = components
        self._started_at = time.time()
        self._stopping = False
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/status", self._status)
        self._server = ServerRunner(
            app, listen, name="admin", limits=limits, metrics=metrics, shutdown_timeout=1.0
        )

    @property
    def port(self) -> int:
        return self._server.port

    def mark_stopping(self) -> None:
        """While draining, /readyz says so, so load balancers stop sending work."""
        self._stopping = True

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    def health(self) -> Health:
        return Health(ready=True, state="serving")

    def status(self) -> dict[str, Any]:
        return {"listen": f"{self._server.host}:{self._server.port}"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        states = {c.name: c.health() for c in self._components() if c is not self}
        ready = not self._stopping and all(
            h.ready and (h.dependency_ok or not self._strict) for h in states.values()
        )
        body: dict[str, Any] = {
            "ready": ready,
            "components": {name: h.as_dict() for name, h in states.items()},
        }
        if self._stopping:
            body["reason"] = "shutting down"
        return ready, body

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        dead = {
            c.name: h.as_dict()
            for c in self._components()
            if c is not self and not (h := c.health()).alive
        }
        if not dead:
            return True, {"status": "ok"}
        return False, {"status": "failed", "components": dead}

    async def _healthz(self, request: web.Request) -> web.Response:
        alive, body = self.liveness()
        return self._json(body, status=200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = self.readiness()
        return self._json(body, status=200 if ready else 503)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        text = self._redact(self._metrics.render().decode())
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    def _json(self, body: dict[str, Any], status: int = 200) -> web.Response:
        """Every admin answer passes the redactor: a component's status or a dependency's error
        text may quote a URL or a header."""
        text = self._redact(orjson.dumps(body).decode())
        return web.Response(body=text.encode(), status=status, content_type="application/json")

    async def _status(self, request: web.Request) -> web.Response:
        ready, readiness = self.readiness()
        body = {
            "version": __version__,
            "uptime_seconds": round(time.time() - self._started_at, 3),
            "ready": ready,
            "health": readiness["components"],
            "components": {c.name: c.status() for c in self._components() if c is not self},
        }
        return self._json(body)
