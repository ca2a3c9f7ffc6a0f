"""Reading the deployment files for tests: YAML documents, the agent's settings, `check-config`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.dockerfile import REPO_ROOT
from tests.harness.agent_process import clean_environment

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
CONFIGS = REPO_ROOT / "configs"

# What the Downward API would put into fieldRef variables, for expanding $(VAR) references.
DOWNWARD_SAMPLE = {
    "metadata.name": "jobs-api-6d5f7c9b8-x2x7q",
    "metadata.namespace": "jobs",
    "metadata.uid": "0f6f4a55-32d1-4d55-9d3c-7a8d8c0d7f5e",
    "spec.nodeName": "node-a",
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_config(
    config: Path | None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`sidecar-agent check-config [--config F]` with only `env` on top of a clean env."""
    argv = [sys.executable, "-m", "agent", "check-config"]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        argv,
        env=clean_environment(env or {}),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's env as the kubelet would build it: fieldRefs from DOWNWARD_SAMPLE and
    `$(NAME)` references expanded only to variables defined earlier in the list."""
    values: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            values[item["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: values.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
        elif "fieldRef" in item.get("valueFrom", {}):
            values[item["name"]] = DOWNWARD_SAMPLE[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return values


def pod_containers(deployment: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def sidecar_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    found = [c for c in pod_containers(deployment) if c["name"] == "sidecar-agent"]
    assert len(found) == 1, "one container named sidecar-agent"
    return found[0]


def quantity_bytes(text: str) -> int:
    """Kubernetes quantities of bytes: 2Gi, 1100Mi, 512M."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6}
    units |= {"G": 10**9, "T": 10**12}
    match = re.fullmatch(r"(\d+)([KMGT]i?|k)?", str(text))
    assert match, f"not a byte quantity: {text}"
    return int(match.group(1)) * units.get(match.group(2) or "", 1)
