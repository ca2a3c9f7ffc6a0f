"""The real kustomize, built once per machine with Go (like Jaeger), to render deploy/kubernetes.

- KUSTOMIZE_BIN set: used as is.
- Otherwise `go install sigs.k8s.io/kustomize/kustomize/v5@<version>` into a temporary GOBIN,
  renamed into the same per-machine cache as Jaeger (~20 s on a cold cache here). A lock
  serialises concurrent builds; a half-built binary is never mistaken for a finished one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness import HarnessError
from tests.harness.jaeger import jaeger_cache_path

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"


def find_go() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if found is None:
        raise HarnessError("Go toolchain not found: needed once to build kustomize")
    return found


def kustomize_binary() -> Path:
    override = os.environ.get("KUSTOMIZE_BIN")
    if override:
        return Path(override)
    cache = jaeger_cache_path().parent
    target = cache / f"kustomize-{KUSTOMIZE_VERSION}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".kustomize-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _build_into(target)
    return target


def _build_into(target: Path) -> None:
    # Inside the cache directory, so the final rename never crosses filesystems.
    with tempfile.TemporaryDirectory(prefix="kustomize-build-", dir=target.parent) as gobin:
        env = dict(os.environ, GOBIN=gobin, GOFLAGS="-buildvcs=false")
        result = subprocess.run(
            [find_go(), "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        if result.returncode != 0:
            raise HarnessError(f"building kustomize failed:\n{result.stderr[-3000:]}")
        os.replace(Path(gobin) / "kustomize", target)


def build(directory: Path, *, load_restrictor_none: bool = False) -> str:
    """`kustomize build DIRECTORY`: the rendered multi-document YAML."""
    argv = [str(kustomize_binary()), "build", str(directory)]
    if load_restrictor_none:
        argv += ["--load-restrictor", "LoadRestrictionsNone"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed:\n{result.stderr}")
    return result.stdout
