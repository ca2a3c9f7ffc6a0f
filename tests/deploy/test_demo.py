"""scripts/demo end to end, on free ports and in a temporary DEMO_DIR, then `scripts/demo stop`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import REPO_ROOT
from tests.harness import find_jaeger_binary, free_port
from tests.harness.agent_process import clean_environment

pytestmark = pytest.mark.integration

PORTS = (
    "REDIS",
    "OTLP_HTTP",
    "OTLP_GRPC",
    "JAEGER_UI",
    "JAEGER_GRPC",
    "JAEGER_HEALTH",
    "ADMIN",
    "PROXY",
)


def demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / "demo"), *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.timeout(300)
def test_demo_checks_spans_in_jaeger_and_messages_in_redis(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    settings = {f"DEMO_{name}_PORT": str(free_port()) for name in PORTS}
    settings["DEMO_DIR"] = str(demo_dir)
    settings["JAEGER_BIN"] = str(find_jaeger_binary())
    env = clean_environment(settings)
    try:
        started = demo(env=env)
        pids = {p.stem: int(p.read_text()) for p in (demo_dir / "pids").glob("*.pid")}
    finally:
        stopped = demo("stop", env=env)
    output = started.stdout + started.stderr
    assert started.returncode == 0, output
    assert "PASS  Jaeger has" in started.stdout
    assert "PASS  Redis stream stream:job.events holds" in started.stdout
    assert "FAIL" not in started.stdout
    assert f"http://localhost:{settings['DEMO_JAEGER_UI_PORT']}/search" in started.stdout
    assert "demo: 4 passed, 0 failed" in started.stdout

    assert stopped.returncode == 0, stopped.stderr
    assert set(pids) == {"redis", "jaeger", "sidecar-agent", "sample-service"}
    assert not [name for name, pid in pids.items() if running(pid)], "demo stop left processes"
    assert not list((demo_dir / "pids").glob("*.pid"))
    # The agent drained and said so on SIGTERM.
    assert "agent stopped" in (demo_dir / "logs" / "sidecar-agent.log").read_text()
