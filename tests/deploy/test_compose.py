"""deploy/compose: the compose file against the official Compose Specification schema, and its
wiring (volumes, namespaces, ports, grace period, logging drivers, privileges) against the
agent's config and the image, and the sample service's stdout, wrapped as Docker's json-file
driver wraps it, read through the demo's config.

The schema is the compose-spec project's `compose-spec.json` (Apache-2.0) as vendored, with its
licence, by the check-jsonschema package on PyPI; nothing is fetched at test time.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.config.load import load_config
from agent.config.tree import Config
from agent.spans.backfill import END_OF_TIME_NS
from agent.spans.pipeline import decoders_for
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


def compose_config(environ: dict[str, str] | None = None) -> Config:
    sidecar = compose()["services"]["sidecar-agent"]
    source, _mode = mounts(sidecar)[sidecar["environment"]["SIDECAR_CONFIG"]]
    env = sidecar["environment"] if environ is None else environ
    return load_config(config_path=str(COMPOSE_DIR / source), environ=env)


def test_sidecar_service_matches_its_config_and_the_image() -> None:
    services = compose()["services"]
    sidecar = services["sidecar-agent"]
    assert (COMPOSE_DIR / sidecar["build"]["context"] / sidecar["build"]["dockerfile"]).exists()
    assert "command" not in sidecar, "the image's CMD (run) is used"
    targets = mounts(sidecar)
    source, mode = targets[sidecar["environment"]["SIDECAR_CONFIG"]]
    assert mode == "ro" and (COMPOSE_DIR / source).is_file()
    config = compose_config()

    assert targets[config.data_dir] == ("agent-node-data", "rw"), "the data dir is a volume"
    assert sidecar["read_only"] is True and sidecar["tmpfs"] == ["/tmp"]
    assert seconds(sidecar["stop_grace_period"]) >= config.shutdown_timeout + 5
    admin_port = config.admin.listen.rpartition(":")[2]
    assert f"127.0.0.1:{admin_port}:{admin_port}" in sidecar["ports"]
    assert config.export.endpoint.startswith("http://jaeger:4318/")
    assert config.redis.url.startswith("redis://redis:6379/")
    assert config.service.name == "sample-jobfirst"


def test_the_sidecar_reads_dockers_root_owned_logs_with_one_capability() -> None:
    sidecar = compose()["services"]["sidecar-agent"]
    assert sidecar["user"] == "0:0", "Docker's log files are root's, mode 0640"
    assert sidecar["cap_drop"] == ["ALL"]
    assert sidecar["cap_add"] == ["DAC_READ_SEARCH"], "read and search, no write or chown"
    assert "no-new-privileges:true" in sidecar["security_opt"]
    assert "privileged" not in sidecar
    # Root without DAC_OVERRIDE cannot write the image's data dir (uid 10001's, 0750): the
    # data volume sits at a path the image does not have, so Docker makes it root's.
    image = dockerfile.load()[-1]
    assert image.last("USER").args == "10001:10001"
    image_data_dir = image.env()["SIDECAR_DATA_DIR"]
    data_dir = compose_config().data_dir
    assert data_dir != image_data_dir and not data_dir.startswith(image_data_dir + "/")
    assert sidecar["working_dir"] == data_dir, "not the image's WORKDIR, uid 10001's"
    every_mount = mounts(sidecar)
    writable = {target for target, (_, mode) in every_mount.items() if mode != "ro"}
    assert writable == {data_dir}, "all but the data volume (and the /tmp tmpfs) read-only"


def test_sample_service_shares_the_loopback_with_the_sidecar() -> None:
    services = compose()["services"]
    sample = services["sample-service"]
    assert sample["network_mode"] == "service:sidecar-agent"
    assert f"--proxy=http://{compose_config(environ={}).proxy.listen}" in sample["command"]
    script_source, _ = mounts(sample)[sample["command"][1]]
    script = (COMPOSE_DIR / script_source).resolve()
    assert script == REPO_ROOT / "deploy" / "sample-service" / "sample_service.py"
    assert sample["depends_on"]["sidecar-agent"]["condition"] == "service_healthy"


def test_the_sample_service_logs_to_stdout_through_the_json_file_driver() -> None:
    services = compose()["services"]
    sample = services["sample-service"]
    assert "--log-dir=-" in sample["command"]
    logging = sample["logging"]
    assert logging["driver"] == "json-file", "explicit, whatever the daemon's default"
    assert re.fullmatch(r"\d+[kmg]", logging["options"]["max-size"])
    assert int(logging["options"]["max-file"]) >= 2, "Docker's rotation is exercised"
    assert "volumes" not in sample or all(
        target.startswith("/app/") for target in mounts(sample)
    ), "no log volume: the sample shares nothing with the sidecar but its stdout"


def test_the_sidecar_reads_only_the_json_file_logs_and_not_its_own() -> None:
    services = compose()["services"]
    containers = "/var/lib/docker/containers"
    assert mounts(services["sidecar-agent"])[containers] == (containers, "ro")
    config = compose_config()
    assert config.spans.container_logs == "docker"
    assert config.spans.format == "auto", "one stdout holds span-json and JobFirst lines"
    container_id = "ab" * 32
    live = f"{containers}/{container_id}/{container_id}-json.log"
    assert [glob for glob in config.spans.paths if fnmatch.fnmatch(live, glob)]
    for glob in config.spans.paths:
        assert glob.startswith(containers + "/")
        # What the local driver writes, and Docker's own files beside the log, are not read.
        for other in ("local-logs/container.log", "config.v2.json", "hostconfig.json"):
            assert not fnmatch.fnmatch(f"{containers}/{container_id}/{other}", glob)
    for name, service in services.items():
        if name != "sample-service":
            assert service["logging"]["driver"] == "local", f"{name}: its logs are not spans"


def test_the_sample_services_stdout_as_docker_stores_it_becomes_spans(tmp_path: Path) -> None:
    """The sample service run for real with --log-dir=-, its stdout and stderr wrapped as
    Docker's json-file driver wraps them, read through the compose config's decoders."""
    stdout, stderr = run_sample_service(requests=3)
    lines = [docker_json_line(text, "stdout") for text in stdout.splitlines(keepends=True)]
    lines += [docker_json_line(text, "stderr") for text in stderr.splitlines(keepends=True)]
    config = compose_config()
    container_id = "cd" * 32
    path = f"/var/lib/docker/containers/{container_id}/{container_id}-json.log"
    decode = decoders_for(config)(path)
    result = decode.feed_many(lines, time.time_ns())
    result.merge(decode.expire(END_OF_TIME_NS))
    assert result.dead == []
    assert result.skipped >= 3 + 2, "the ordinary log and stderr lines are skipped"
    services = Counter(span.service_name for span in result.spans)
    assert services == {"sample-service": 2 * 3, None: 3}  # None: the config's name applies
    assert all(span.resource["container.id"] == container_id for span in result.spans)


def run_sample_service(requests: int) -> tuple[str, str]:
    with ThreadingHTTPServer(("127.0.0.1", 0), AcceptEverything) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    str(REPO_ROOT / "deploy" / "sample-service" / "sample_service.py"),
                    "--log-dir=-",
                    f"--proxy=http://127.0.0.1:{proxy.server_address[1]}",
                    f"--count={requests}",
                    "--interval=0",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            proxy.shutdown()
            thread.join()
    return done.stdout, done.stderr


class AcceptEverything(BaseHTTPRequestHandler):
    """Stands in for the sidecar's publish API, which this test does not exercise."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def docker_json_line(text: str, stream: str) -> bytes:
    """What Docker's json-file driver writes for one line: Go's encoding/json, which also
    escapes <, > and & as \\u003c, \\u003e, \\u0026."""
    record = json.dumps(
        {"log": text, "stream": stream, "time": "2026-12-05T10:00:00.123456789Z"},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        record = record.replace(char, escape)
    return record.encode()


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
