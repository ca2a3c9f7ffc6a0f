"""`sidecar-agent run` as a real process: serves admin endpoints, drains and exits on SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from agent import native
from tests.harness.agent_process import AgentProcess
from tests.harness.eventually import eventually_sync

pytestmark = pytest.mark.integration


def test_run_serves_admin_and_exits_zero_on_sigterm(tmp_path: Path) -> None:
    agent = AgentProcess(
        tmp_path,
        {"SIDECAR_MESSAGES_ENABLED": "false", "SIDECAR_SPANS_ENABLED": "false"},
    )
    agent.start()
    status, body = agent.get("/healthz")
    assert status == 200 and orjson.loads(body) == {"status": "ok"}
    status, body = agent.get("/metrics")
    assert status == 200
    assert b"sidecar_build_info{" in body
    # The agent process runs the compiled modules whenever this test process does.
    assert f'native="{len(native.STATUS.modules)}"'.encode() in body
    assert b"process_resident_memory_bytes" in body
    ready, readiness = agent.get("/readyz")
    assert ready == 200 and orjson.loads(readiness)["ready"] is True
    assert agent.status()["version"]
    started = time.monotonic()
    assert agent.terminate(timeout=25) == 0
    assert time.monotonic() - started < 10
    messages = [line["msg"] for line in agent.log_lines()]
    assert messages[-2:] == ["shutdown requested", "agent stopped"]


def test_second_agent_on_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    settings = {"SIDECAR_MESSAGES_ENABLED": "false", "SIDECAR_SPANS_ENABLED": "false"}
    first = AgentProcess(tmp_path, settings)
    first.start()
    second = AgentProcess(
        tmp_path / "second", {**settings, "SIDECAR_DATA_DIR": str(tmp_path / "data")}
    )
    second.process.start()
    eventually_sync(lambda: not second.process.running, timeout=15, what="the refusal")
    assert "in use by another sidecar-agent process" in second.log_tail()
    assert first.terminate() == 0


def test_bad_config_exits_two_before_serving(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, {"SIDECAR_SPANS_PATH": "/x"})
    agent.process.start()
    eventually_sync(lambda: not agent.process.running, timeout=15, what="the exit")
    assert agent.process.returncode == 2
    assert "did you mean SIDECAR_SPANS_PATHS" in agent.log_tail()


def test_healthcheck_subcommand_follows_readiness(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness.agent_process import clean_environment

    settings = {"SIDECAR_MESSAGES_ENABLED": "false", "SIDECAR_SPANS_ENABLED": "false"}
    agent = AgentProcess(tmp_path, settings)
    check = [sys.executable, "-m", "agent", "healthcheck", "--url", agent.admin_url]
    env = clean_environment({})
    assert subprocess.run(check, env=env, capture_output=True, check=False).returncode == 1
    agent.start()
    assert subprocess.run(check, env=env, capture_output=True, check=False).returncode == 0
    assert agent.terminate() == 0
    bad_config = clean_environment({"SIDECAR_NOPE": "1"})
    result = subprocess.run(check, env=bad_config, capture_output=True, check=False)
    assert result.returncode == 1, "a healthcheck never exits 2 (Docker reserves it)"


def test_status_subcommand_shows_components_and_summaries(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness.agent_process import clean_environment

    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    agent = AgentProcess(
        tmp_path,
        {
            "SIDECAR_MESSAGES_ENABLED": "false",
            "SIDECAR_SPANS_PATHS": str(log_dir / "*.log"),
            "SIDECAR_EXPORT_ENDPOINT": "http://127.0.0.1:9/v1/traces",
        },
    )
    agent.start()
    command = [sys.executable, "-m", "agent", "status", "--url", agent.admin_url]
    env = {**clean_environment({}), "COLUMNS": "120"}
    shown = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    assert "ready" in shown and "spans" in shown and "lines read" in shown
    raw = subprocess.run([*command, "--json"], env=env, capture_output=True, check=True).stdout
    assert orjson.loads(raw)["components"]["spans"]["summary"]["lines_read"] == 0
    assert agent.terminate() == 0
    unreachable = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert unreachable.returncode == 1 and "cannot read" in unreachable.stderr
