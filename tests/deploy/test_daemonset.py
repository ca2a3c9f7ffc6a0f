"""deploy/kubernetes/daemonset: the node agent reading kubelet's container logs. Its ConfigMap
is configs/kubernetes-daemonset.yaml verbatim and passes check-config with the pod's
environment; the DaemonSet mounts what the config reads and writes; kustomize renders it into
resources valid against the Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as schemas

from agent.config.load import load_config
from tests.deploy import kustomize
from tests.deploy.manifests import CONFIGS, KUBERNETES, check_config, container_env, documents

DAEMONSET = KUBERNETES / "daemonset"
CONFIG = CONFIGS / "kubernetes-daemonset.yaml"


def daemonset() -> dict[str, Any]:
    [found] = documents(DAEMONSET / "daemonset.yaml")
    return found


def agent_container() -> dict[str, Any]:
    [container] = daemonset()["spec"]["template"]["spec"]["containers"]
    return container


def test_configmap_is_the_config_file_verbatim_and_passes_check_config(tmp_path: Path) -> None:
    [configmap] = documents(DAEMONSET / "configmap.yaml")
    assert configmap["data"]["agent.yaml"] == CONFIG.read_text()
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(configmap["data"]["agent.yaml"])
    environment = container_env(agent_container())
    result = check_config(config_file, environment)
    assert result.returncode == 0, result.stderr


def test_the_pod_mounts_what_the_config_reads_and_writes() -> None:
    config = load_config(config_path=str(CONFIG), environ={})
    assert config.spans.container_logs == "cri"
    container = agent_container()
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {v["name"]: v for v in daemonset()["spec"]["template"]["spec"]["volumes"]}
    for pattern in config.spans.paths:
        root = "/" + pattern.strip("/").split("/*")[0]
        assert mounts[root]["readOnly"] is True, pattern
        assert volumes[mounts[root]["name"]]["hostPath"]["path"] == root
    data = mounts[config.data_dir]
    assert "hostPath" in volumes[data["name"]], "per-node state survives agent restarts"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    port = int(config.admin.listen.rsplit(":", 1)[1])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    tolerated = {t.get("effect") for t in daemonset()["spec"]["template"]["spec"]["tolerations"]}
    assert {"NoSchedule", "NoExecute"} <= tolerated


@pytest.mark.timeout(600)
def test_kustomize_renders_a_valid_daemonset() -> None:
    rendered = list(yaml.safe_load_all(kustomize.build(DAEMONSET)))
    assert sorted(doc["kind"] for doc in rendered) == ["ConfigMap", "DaemonSet"]
    for resource in rendered:
        schemas.validate(resource, schemas.latest_version(), strict=True)
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "sidecar-agent"
