"""deploy/kubernetes: every manifest against the Kubernetes schemas (offline, strict), rendered
by the real kustomize in each variant, and the pod spec's promises checked against the config
and the image."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as schemas

from agent.config.load import load_config
from tests.deploy import dockerfile, kustomize
from tests.deploy.manifests import (
    CONFIGS,
    KUBERNETES,
    container_env,
    documents,
    quantity_bytes,
    sidecar_of,
)

# Native sidecars (restartPolicy on an init container) are on by default from 1.29.
OLDEST_NATIVE_SIDECAR = "1.29.0"
OLDEST_SHIPPED = schemas.all_versions()[0]
NEWEST_SHIPPED = schemas.latest_version()
# Custom resources: no schema ships with Kubernetes; checked by hand below instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
KUSTOMIZE_KINDS = ("Kustomization", "Component")


def manifest_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("*.yaml"))


def resources_in(path: Path) -> list[dict[str, Any]]:
    docs = documents(path)
    if isinstance(yaml.safe_load(path.read_text()), list):
        return []  # a JSON patch (persistent-buffer/patch.yaml), applied by kustomize below
    return [doc for doc in docs if doc.get("kind") not in KUSTOMIZE_KINDS]


def validate(resource: dict[str, Any], version: str) -> None:
    try:
        schemas.validate(resource, version, strict=True)
    except schemas.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(
            f"{resource['kind']} {resource['metadata']['name']} @ {version}: {where}: "
            f"{error.message}"
        )


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    versions = [OLDEST_NATIVE_SIDECAR, NEWEST_SHIPPED]
    if path.parent.name == "plain-sidecar":
        versions.insert(0, OLDEST_SHIPPED)  # it exists for older clusters
    for resource in resources_in(path):
        key = (resource["apiVersion"], resource["kind"])
        for version in versions:
            if key in CUSTOM_KINDS:
                with pytest.raises(schemas.SchemaNotFoundError):
                    schemas.validate(resource, version, strict=True)
            else:
                validate(resource, version)


def test_every_yaml_file_holds_something_checked() -> None:
    for path in manifest_files():
        docs = documents(path)
        assert docs, f"{path} is empty"
        kinds = {doc.get("kind") for doc in docs if isinstance(doc, dict)}
        is_patch = isinstance(yaml.safe_load(path.read_text()), list)
        assert is_patch or kinds, path


def test_strict_validation_rejects_a_misspelt_field() -> None:
    deployment = documents(KUBERNETES / "deployment.yaml")[0]
    broken = copy.deepcopy(deployment)
    sidecar_of(broken)["securityContext"]["readOnlyRootFileSystem"] = True  # capital S
    with pytest.raises(schemas.ValidationError):
        schemas.validate(broken, NEWEST_SHIPPED, strict=True)


def test_native_sidecar_needs_a_recent_schema() -> None:
    # Documents the minimum version: 1.27 does not know restartPolicy on a container.
    deployment = documents(KUBERNETES / "deployment.yaml")[0]
    with pytest.raises(schemas.ValidationError, match="restartPolicy"):
        schemas.validate(deployment, "1.27.0", strict=True)


def test_plain_sidecar_variant_is_the_same_pod_with_the_sidecar_moved() -> None:
    native = documents(KUBERNETES / "deployment.yaml")[0]
    plain = documents(KUBERNETES / "plain-sidecar" / "deployment.yaml")[0]
    moved = copy.deepcopy(native)
    spec = moved["spec"]["template"]["spec"]
    (sidecar,) = spec.pop("initContainers")
    assert sidecar.pop("restartPolicy") == "Always"
    spec["containers"].append(sidecar)
    assert plain == moved


# --- rendered by kustomize ----------------------------------------------------------------


def overlay(tmp_path: Path, body: dict[str, Any]) -> Path:
    directory = tmp_path / "overlay"
    directory.mkdir()
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(document | body))
    return directory


def relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def render_variant(variant: str, tmp_path: Path) -> list[dict[str, Any]]:
    if variant == "native":
        return list(yaml.safe_load_all(kustomize.build(KUBERNETES)))
    directory = tmp_path / "overlay"
    if variant == "persistent-buffer":
        body = {
            "resources": [relative(KUBERNETES, directory)],
            "components": [relative(KUBERNETES / "persistent-buffer", directory)],
        }
    else:  # plain: the same resources with plain-sidecar/deployment.yaml swapped in
        base = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
        files = [
            "plain-sidecar/deployment.yaml" if name == "deployment.yaml" else name
            for name in base["resources"]
        ]
        body = {
            "resources": [relative(KUBERNETES / name, directory) for name in files],
            "labels": base["labels"],
            "images": base["images"],
        }
    rendered = kustomize.build(overlay(tmp_path, body), load_restrictor_none=True)
    return list(yaml.safe_load_all(rendered))


def by_kind(rendered: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in rendered if doc["kind"] == kind]
    assert len(found) == 1, f"one {kind} expected, got {len(found)}"
    return found[0]


@pytest.fixture(params=["native", "plain", "persistent-buffer"])
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> list[dict[str, Any]]:
    return render_variant(request.param, tmp_path)


@pytest.mark.timeout(600)
def test_kustomize_renders_valid_resources(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in rendered)
    assert {"ConfigMap", "Deployment", "Service"} <= set(kinds)
    for resource in rendered:
        validate(resource, OLDEST_NATIVE_SIDECAR if needs_native(resource) else OLDEST_SHIPPED)
        validate(resource, NEWEST_SHIPPED)
        assert resource["metadata"]["labels"]["app.kubernetes.io/part-of"] == "jobs-api"
    deployment = by_kind(rendered, "Deployment")
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert sidecar_of(deployment)["image"] == "sidecar-agent:0.1.0"
    assert images & {"example.com/jobs-api:1.0.0"}


def needs_native(resource: dict[str, Any]) -> bool:
    if resource["kind"] != "Deployment":
        return False
    return bool(resource["spec"]["template"]["spec"].get("initContainers"))


@pytest.mark.timeout(600)
def test_persistent_buffer_component_swaps_the_data_volume(tmp_path: Path) -> None:
    rendered = render_variant("persistent-buffer", tmp_path)
    deployment = by_kind(rendered, "Deployment")
    claim = by_kind(rendered, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["agent-data"] == {
        "name": "agent-data",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "emptyDir" in volumes["app-logs"]
    room = quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    assert room >= data_bytes_needed()


# --- what the pod spec promises -----------------------------------------------------------


def agent_config() -> Any:
    configmap = documents(KUBERNETES / "configmap.yaml")[0]
    return configmap, load_config(config_path=str(CONFIGS / "kubernetes.yaml"), environ={})


def data_bytes_needed() -> int:
    _, config = agent_config()
    queues = config.export.queue.max_bytes + config.messages.queue.max_bytes
    dead_letters = 2 * (config.spans.dead_letter_max_bytes + config.messages.dead_letter_max_bytes)
    return queues + dead_letters


def test_configmap_is_configs_kubernetes_yaml_verbatim() -> None:
    configmap, _ = agent_config()
    assert configmap["data"]["agent.yaml"] == (CONFIGS / "kubernetes.yaml").read_text()


@pytest.mark.parametrize("path", ["deployment.yaml", "plain-sidecar/deployment.yaml"])
def test_pod_spec_matches_the_config_and_the_image(path: str) -> None:
    deployment = documents(KUBERNETES / path)[0]
    pod = deployment["spec"]["template"]["spec"]
    sidecar = sidecar_of(deployment)
    configmap, config = agent_config()
    runtime = dockerfile.load()[-1]
    uid, gid = (int(part) for part in runtime.last("USER").args.split(":"))

    # Security: non-root with the image's uid, read-only root, nothing extra.
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["fsGroup"] == gid
    assert sidecar["resources"]["requests"] and sidecar["resources"]["limits"]["memory"]

    # Volumes: the data dir, the config file, the shared span logs, /tmp.
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["agent-data"]["mountPath"] == config.data_dir
    assert volumes["agent-config"]["configMap"]["name"] == configmap["metadata"]["name"]
    config_file = container_env(sidecar)["SIDECAR_CONFIG"]
    assert config_file == f"{mounts['agent-config']['mountPath']}/agent.yaml"
    assert sidecar["args"] == ["run"]
    app = next(c for c in pod["containers"] if c["name"] == "app")
    app_logs = next(m for m in app["volumeMounts"] if m["name"] == "app-logs")
    assert "emptyDir" in volumes["app-logs"] and mounts["app-logs"]["readOnly"] is True
    for pattern in config.spans.paths:
        assert pattern.startswith(app_logs["mountPath"] + "/"), pattern
    assert "tmp" in mounts
    assert quantity_bytes(volumes["agent-data"]["emptyDir"]["sizeLimit"]) >= data_bytes_needed()

    # Probes on the admin port, which is the config's admin.listen port.
    admin_port = int(config.admin.listen.rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports["admin"] == admin_port
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(admin_port)

    # The grace period covers the agent's drain, with room for the app to exit first.
    assert pod["terminationGracePeriodSeconds"] >= config.shutdown_timeout + 5

    # Downward API → OTEL_RESOURCE_ATTRIBUTES → the config's resource attributes.
    env = container_env(sidecar)
    loaded = load_config(config_path=str(CONFIGS / "kubernetes.yaml"), environ=env)
    attributes = loaded.service.resource_attributes
    assert attributes["k8s.pod.name"] == "jobs-api-6d5f7c9b8-x2x7q"
    assert attributes["k8s.namespace.name"] == "jobs"
    assert attributes["k8s.node.name"] == "node-a"


def test_servicemonitor_selects_the_metrics_service() -> None:
    service = documents(KUBERNETES / "service.yaml")[0]
    monitor = documents(KUBERNETES / "servicemonitor.yaml")[0]
    deployment = documents(KUBERNETES / "deployment.yaml")[0]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= port_names
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    target = service["spec"]["ports"][0]["targetPort"]
    assert target in {p["name"] for p in sidecar_of(deployment)["ports"]}
