"""deploy/compose: the compose file against the official Compose Specification schema, and its
wiring (volumes, namespaces, ports, grace period) against the agent's config and the image.

The schema is the compose-spec project's `compose-spec.json` (Apache-2.0) as vendored, with its
licence, by the check-jsonschema package on PyPI; nothing is fetched at test time.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.config.load import load_config
from tests.deploy import dockerfile
from tests.deploy.manifests import COMPOSE_FILE, REPO_ROOT

COMPOSE_DIR = COMPOSE_FILE.parent


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendored / "compose-spec.json").read_text())
    assert "Compose Specification" in schema["title"]
    return schema


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    assert schema_errors(compose()) == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda doc: doc.update(servics=doc.pop("services")),  # misspelt top-level key
        lambda doc: doc["services"]["sidecar-agent"].update(stop_grace_period=[30]),
        lambda doc: doc["services"]["redis"]["healthcheck"].update(retrys=3),
    ],
    ids=["top-level-key", "wrong-type", "unknown-healthcheck-key"],
)
def test_the_schema_check_does_reject_broken_files(breakage: Any) -> None:
    document = copy.deepcopy(compose())
    breakage(document)
    assert schema_errors(document)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target path -> (source, mode)"""
    result = {}
    for entry in service.get("volumes", []):
        source, target, *mode = entry.split(":")
        result[target] = (source, mode[0] if mode else "rw")
    return result


def test_images_are_pinned() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = service["image"]
        assert re.search(r":\d+\.\d+\.\d+", image), f"{name}: pin a full version: {image}"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    # The sample runs on the image the agent's Dockerfile is built from.
    assert services["sample-service"]["image"] == dockerfile.load()[-1].base


def test_sidecar_service_matches_its_config_and_the_image() -> None:
    services = compose()["services"]
    sidecar = services["sidecar-agent"]
    assert (COMPOSE_DIR / sidecar["build"]["context"] / sidecar["build"]["dockerfile"]).exists()
    assert "command" not in sidecar, "the image's CMD (run) is used"
    config_path = sidecar["environment"]["SIDECAR_CONFIG"]
    targets = mounts(sidecar)
    source, mode = targets[config_path]
    assert mode == "ro" and (COMPOSE_DIR / source).is_file()
    config = load_config(config_path=str(COMPOSE_DIR / source), environ=sidecar["environment"])

    assert targets[config.data_dir][0] in compose()["volumes"], "the data dir is a named volume"
    assert config.data_dir == dockerfile.load()[-1].env()["SIDECAR_DATA_DIR"]
    assert sidecar["read_only"] is True and sidecar["tmpfs"] == ["/tmp"]
    assert seconds(sidecar["stop_grace_period"]) >= config.shutdown_timeout + 5
    admin_port = config.admin.listen.rpartition(":")[2]
    assert f"127.0.0.1:{admin_port}:{admin_port}" in sidecar["ports"]
    assert config.export.endpoint.startswith("http://jaeger:4318/")
    assert config.redis.url.startswith("redis://redis:6379/")
    assert config.service.name == "sample-jobfirst"


def test_sample_service_shares_logs_and_loopback_with_the_sidecar() -> None:
    services = compose()["services"]
    sidecar, sample = services["sidecar-agent"], services["sample-service"]
    assert sample["network_mode"] == "service:sidecar-agent"
    config_source = mounts(sidecar)[sidecar["environment"]["SIDECAR_CONFIG"]][0]
    config = load_config(config_path=str(COMPOSE_DIR / config_source), environ={})
    assert f"--proxy=http://{config.proxy.listen}" in sample["command"]

    log_dir = next(arg.split("=", 1)[1] for arg in sample["command"] if arg.startswith("--log-"))
    assert mounts(sample)[log_dir] == ("app-logs", "rw")
    assert mounts(sidecar)[log_dir] == ("app-logs", "ro")
    for pattern in config.spans.paths:
        assert pattern.startswith(log_dir + "/")

    script_source, _ = mounts(sample)[sample["command"][1]]
    script = (COMPOSE_DIR / script_source).resolve()
    assert script == REPO_ROOT / "deploy" / "sample-service" / "sample_service.py"
    assert sample["depends_on"]["sidecar-agent"]["condition"] == "service_healthy"


def test_every_named_volume_is_declared_and_used() -> None:
    document = compose()
    declared = set(document["volumes"])
    used = {
        source
        for service in document["services"].values()
        for source, _mode in mounts(service).values()
        if not source.startswith((".", "/"))
    }
    assert used == declared


def test_readme_names_what_to_open() -> None:
    readme = (COMPOSE_DIR / "README.md").read_text()
    assert "docker compose -f deploy/compose/docker-compose.yml up" in readme
    assert "http://localhost:16686" in readme
    assert "stream:job.events" in readme
    assert Path(COMPOSE_FILE).name in readme
