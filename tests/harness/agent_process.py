"""The agent itself as a real child process (`python -m agent run`), for restart and crash tests.

The environment is built from scratch: the parent's SIDECAR_* and OTEL_* variables are dropped
so a developer's shell cannot change what a test means; the test passes every setting it relies
on. Admin and proxy listen on free loopback ports unless the test says otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from tests.harness.eventually import eventually_sync
from tests.harness.ports import LOOPBACK, free_port
from tests.harness.process import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


_NATIVE_ENV = ("SIDECAR_AGENT_NATIVE", "SIDECAR_AGENT_NATIVE_DIR")


def clean_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This environment without what configures the agent; the compiled-modules switch
    (SIDECAR_AGENT_NATIVE, not a config key) is kept, so the agent runs as this process does."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _NATIVE_ENV or (not key.startswith(("SIDECAR_", "OTEL_")) and key != "REDIS_URL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (enough for assertions in tests)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        samples[name] = float(value)
    return samples


class AgentProcess:
    def __init__(self, workdir: Path, settings: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.admin_port = free_port()
        self.proxy_port = free_port()
        base = {
            "SIDECAR_DATA_DIR": str(workdir / "data"),
            "SIDECAR_ADMIN_LISTEN": f"{LOOPBACK}:{self.admin_port}",
            "SIDECAR_PROXY_LISTEN": f"{LOOPBACK}:{self.proxy_port}",
            "SIDECAR_SHUTDOWN_TIMEOUT": "10s",
        }
        base.update(settings)
        self.env = clean_environment(base)
        self.process = ManagedProcess(
            "sidecar-agent",
            [sys.executable, "-m", "agent", "run"],
            workdir / "agent.log",
            env=self.env,
            cwd=REPO_ROOT,
        )

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://{LOOPBACK}:{self.proxy_port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 20.0) -> None:
        """Start and wait until /healthz answers 200, then (with `wait_ready`) /readyz too."""
        self.process.start()
        self._wait_for_200("/healthz", timeout)
        if wait_ready:
            self._wait_for_200("/readyz", timeout)
        elif self.env.get("SIDECAR_MESSAGES_ENABLED", "true") != "false":
            # The admin port opens first; the publish port once the message pipeline started.
            eventually_sync(
                self._proxy_listening,
                timeout=timeout,
                what="the agent's publish port",
                abort=self.process.exit_reason,
            )

    def _proxy_listening(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, self.proxy_port), timeout=1).close()
        except OSError:
            return False
        return True

    def _wait_for_200(self, path: str, timeout: float) -> None:
        def answers() -> bool:
            try:
                return self.get(path)[0] == 200
            except OSError:  # not listening yet
                return False

        eventually_sync(
            answers, timeout=timeout, what=f"the agent's {path}", abort=self.process.exit_reason
        )

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(self.get("/status")[1])
        return body

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.get("/metrics")[1].decode())

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(
                f"agent did not exit within {timeout}s\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        self.process.kill()

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines)

    def log_lines(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines (lines that are not JSON are skipped)."""
        records = []
        for line in self.process.log_path.read_bytes().splitlines():
            if line.startswith(b"{"):
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return records
