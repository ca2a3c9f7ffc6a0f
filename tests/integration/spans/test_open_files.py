"""Issue 10 item 8: thousands of matched files must not hold thousands of descriptors. A real
agent under `ulimit -n 200` follows 1,000 files with spans.max_open_files 64: every line is
read, nothing fails for lack of descriptors, and the admin port still answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.harness import eventually_sync
from tests.harness.agent_process import AgentProcess
from tests.harness.ports import LOOPBACK, free_port

pytestmark = pytest.mark.integration

FILES = 1000
OPEN_FILES = 200
MAX_OPEN = 64


def descriptors_into(pid: int, directory: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(directory) + os.sep)
    return count


def test_a_thousand_files_under_a_low_descriptor_limit_are_all_read(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for number in range(FILES):
        (logs / f"svc-{number:04d}.log").write_bytes(b"not a span %d\n" % number)
    agent = AgentProcess(
        tmp_path,
        {
            "SIDECAR_MESSAGES_ENABLED": "false",
            "SIDECAR_SPANS_PATHS": str(logs / "*.log"),
            "SIDECAR_SPANS_MAX_OPEN_FILES": str(MAX_OPEN),
            # Nothing listens there; the lines are not spans anyway.
            "SIDECAR_EXPORT_ENDPOINT": f"http://{LOOPBACK}:{free_port()}/v1/traces",
        },
    )
    command = f"ulimit -n {OPEN_FILES} && exec {sys.executable} -m agent run"
    agent.process.argv = ["/bin/sh", "-c", command]
    agent.start(wait_ready=False)
    pid = agent.process.pid
    assert pid is not None
    eventually_sync(
        lambda: agent.metrics().get("sidecar_span_lines_read_total", 0) >= FILES,
        timeout=60,
        what=f"{FILES} lines read",
        abort=agent.process.exit_reason,
    )
    assert descriptors_into(pid, logs) <= MAX_OPEN
    metrics = agent.metrics()
    assert metrics["sidecar_span_files_watched"] == FILES
    assert metrics["sidecar_span_files_open"] <= MAX_OPEN
    assert agent.get("/healthz")[0] == 200
    assert "Too many open files" not in agent.process.log_path.read_text()
    assert agent.terminate() == 0
