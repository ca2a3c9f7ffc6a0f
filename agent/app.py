"""Wiring and lifecycle of a running agent.

Start order: admin first (so /healthz answers during start-up and /readyz says "starting"),
then each pipeline, which starts its own parts downstream first. Stop order is the reverse:
readiness flips to "shutting down", pipelines stop upstream first and drain within the grace
period, admin goes last. Signals only set an event; a second signal forces exit.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
from pathlib import Path
from typing import Any

from agent import __version__, native
from agent.config.secrets import Redactor
from agent.config.tree import Config
from agent.core.admin import AdminServer
from agent.core.eventloop import loop_name
from agent.core.http import ConnectionLimits
from agent.core.lifecycle import Component, start_all, stop_all
from agent.core.metrics import Metrics
from agent.pipelines import build_pipelines

log = logging.getLogger("agent")


class DataDirLockedError(RuntimeError):
    """Another agent already uses this data directory."""


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.data_dir = Path(config.data_dir)
        self.pipelines: list[Component] = []
        self.admin: AdminServer | None = None
        if config.admin.enabled:
            self.admin = AdminServer(
                config.admin.listen,
                self.metrics,
                self.components,
                ready_requires_dependencies=config.admin.ready_requires_dependencies,
                limits=ConnectionLimits(config.admin.max_connections, config.admin.idle_timeout),
                redact=Redactor.for_config(config).text,
            )
        self._lock_fd: int | None = None
        self._started = False
        self._stopped = False

    def components(self) -> list[Component]:
        admin: list[Component] = [self.admin] if self.admin else []
        return admin + self.pipelines

    async def start(self) -> None:
        self._lock_data_dir()
        build = self.metrics.gauge(
            "build_info",
            "Agent version; native: how many compiled hot modules are loaded (0: pure Python).",
            ("version", "native"),
        )
        build.labels(__version__, str(len(native.STATUS.modules))).set(1)
        if self.admin is not None:
            await self.admin.start()
        self.pipelines = build_pipelines(self.config, self.metrics, self.data_dir)
        await start_all(self.pipelines)
        self._started = True
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "pipelines": [p.name for p in self.pipelines],
                "admin": self.config.admin.listen if self.admin else None,
                "event_loop": loop_name(asyncio.get_running_loop()),
                "native": native.STATUS.describe(),
            },
        )

    async def stop(self) -> bool:
        """Drain and stop everything; True when every component stopped within the grace."""
        if self._stopped:
            return True
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        if self.admin is not None:
            self.admin.mark_stopping()
        late = await stop_all(list(reversed(self.pipelines)), deadline)
        if self.admin is not None:
            await self.admin.stop()
        self._unlock_data_dir()
        log.info("agent stopped", extra={"summary": self.summary(), "late": late})
        return not late

    def summary(self) -> dict[str, Any]:
        return {p.name: p.status().get("summary", {}) for p in self.pipelines}

    def _lock_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / ".agent.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLockedError(
                f"data_dir {self.data_dir} is in use by another sidecar-agent process"
            ) from None
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


async def run_until_signalled(config: Config) -> int:
    """The `run` subcommand: start, wait for SIGTERM/SIGINT, drain, exit code."""
    agent = Agent(config)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
            stop_requested.set()
        else:
            log.error("second signal: forcing exit without draining")
            os._exit(130)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await agent.start()
    except Exception:
        log.exception("agent failed to start")
        await agent.stop()
        return 1
    await stop_requested.wait()
    clean = await agent.stop()
    return 0 if clean else 1
