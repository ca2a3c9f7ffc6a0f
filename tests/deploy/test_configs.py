"""Every shipped config passes `sidecar-agent check-config`, with the environment its deployment
gives it (so a misspelt or invented SIDECAR_* variable in a manifest fails here, as it would in
the pod)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    COMPOSE_FILE,
    CONFIGS,
    KUBERNETES,
    check_config,
    container_env,
    documents,
    sidecar_of,
)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_config_files_pass_check_config(path: Path) -> None:
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "check-config prints the effective config"


def test_the_examples_exist() -> None:
    names = {path.name for path in CONFIGS.glob("*.yaml")}
    assert {"agent.yaml", "jobfirst.yaml", "kubernetes.yaml"} <= names


def test_check_config_does_fail_on_an_unknown_key(tmp_path: Path) -> None:
    # What the tests above rely on: a wrong key is exit 2 naming the closest valid one.
    config = tmp_path / "agent.yaml"
    config.write_text("spans:\n  pathes: [/var/log/app/*.log]\n")
    result = check_config(config)
    assert result.returncode == 2
    assert "spans.paths" in result.stderr
    assert check_config(None, {"SIDECAR_SPANS_PATHES": "/x"}).returncode == 2


@pytest.mark.parametrize("path", ["deployment.yaml", "plain-sidecar/deployment.yaml"])
def test_configmap_with_the_pods_environment_passes_check_config(path: str, tmp_path: Path) -> None:
    configmap = documents(KUBERNETES / "configmap.yaml")[0]
    config = tmp_path / "agent.yaml"
    config.write_text(configmap["data"]["agent.yaml"])
    env = container_env(sidecar_of(documents(KUBERNETES / path)[0]))
    assert any(name.startswith("SIDECAR_") for name in env), "the pod sets SIDECAR_* vars too"
    # As in the pod, the config file is found through SIDECAR_CONFIG (here: a local copy).
    assert env["SIDECAR_CONFIG"] == "/etc/sidecar-agent/agent.yaml"
    result = check_config(None, env | {"SIDECAR_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert "k8s.pod.name" in result.stdout


def test_compose_sidecar_config_and_environment_pass_check_config() -> None:
    sidecar = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["sidecar-agent"]
    env = dict(sidecar["environment"])
    config_source = next(
        entry.split(":")[0]
        for entry in sidecar["volumes"]
        if entry.split(":")[1] == env["SIDECAR_CONFIG"]
    )
    env["SIDECAR_CONFIG"] = str(COMPOSE_FILE.parent / config_source)
    result = check_config(None, env)
    assert result.returncode == 0, result.stderr
    assert "compose-demo" in result.stdout
