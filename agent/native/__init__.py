"""Compiled hot modules: the span and message paths that run per record, compiled to C with
mypyc from the same typed sources (`python -m agent.native.build`), and hand-written C
extensions that stand in for pure modules of the same name (`agent/messages/msgpackjson.c`),
loaded in place of the pure-Python modules when a build for exactly these sources is present.

A build is one directory (by default `<sys.prefix>/sidecar-agent-native`, that is, inside the
venv or the image's install prefix; `SIDECAR_AGENT_NATIVE_DIR` names another) holding the
extension files and `manifest.json`, which lists the compiled modules and the SHA-256 of every
source of the package, Python and C, at build time (compiled code also holds what it took from
the modules it imports). The modules of one build call each other directly in C, so a build
is used whole or not at all: if any source differs from the one built with (an edited
checkout, a different install), the agent runs pure Python and `STATUS.reason` says why.

`SIDECAR_AGENT_NATIVE` chooses: `auto` (the default) loads a matching build and otherwise runs
pure Python; `off` (or `0`) never loads one; `require` raises `ImportError` instead of falling
back (the test suite runs with it, so a broken build cannot pass as compiled). Behaviour is the
same either way; only speed differs.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# The directory that holds `agent/`: manifest paths are relative to it.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
_OFF = frozenset({"0", "off", "false", "no"})
_MODES = _OFF | {"auto", "require"}


@dataclass(frozen=True, slots=True)
class NativeStatus:
    mode: str
    directory: str
    modules: tuple[str, ...]
    reason: str
    warning: str = ""

    @property
    def loaded(self) -> bool:
        return bool(self.modules)

    def describe(self) -> str:
        said = (
            f"{len(self.modules)} compiled modules from {self.directory}"
            if self.loaded
            else f"pure Python ({self.reason})"
        )
        return f"{said}; {self.warning}" if self.warning else said


def default_directory() -> Path:
    named = os.environ.get("SIDECAR_AGENT_NATIVE_DIR")
    return Path(named) if named else Path(sys.prefix) / "sidecar-agent-native"


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Finds the listed modules (and the build's shared library) as extension files."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


class BuildMismatch(Exception):
    """The build in the directory is not one for these sources (or not usable here)."""


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise BuildMismatch(f"no build in {directory}") from None
    except (OSError, ValueError) as error:
        raise BuildMismatch(f"unreadable {directory / MANIFEST}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BuildMismatch(f"{directory / MANIFEST} is not a format-{MANIFEST_FORMAT} manifest")
    return manifest


def package_sources(root: Path) -> list[str]:
    """Every source of the `agent` package, Python and C, but this loader and builder (nothing
    compiled depends on them), relative to `root`, sorted."""
    package = root / "agent"
    found = [*package.rglob("*.py"), *package.rglob("*.c")]
    sources = (path.relative_to(root).as_posix() for path in found)
    return sorted(source for source in sources if not source.startswith("agent/native/"))


def build_files(directory: Path, manifest: Mapping[str, Any], root: Path) -> dict[str, Path]:
    """Module name → extension file, once every check passes: the interpreter's extension
    suffix, every source of the package unchanged (compiled code also holds what it took from
    the modules it imports, such as their constants), every file present."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if manifest.get("suffix") != suffix:
        raise BuildMismatch(f"built for {manifest.get('suffix')}, this interpreter loads {suffix}")
    built: Mapping[str, str] = manifest["sources"]
    present = package_sources(root)
    if sorted(built) != present:
        changed = sorted(set(built).symmetric_difference(present))
        raise BuildMismatch(f"{changed[0]} was added or removed since the build")
    for source, digest in built.items():
        try:
            unchanged = source_digest(root / source) == digest
        except OSError as error:
            raise BuildMismatch(f"{source} is unreadable: {error}") from None
        if not unchanged:
            raise BuildMismatch(f"{source} changed since the build")
    files = {name: directory / entry["file"] for name, entry in manifest["modules"].items()}
    for name, file in manifest["shared"].items():
        files[name] = directory / file
    missing = [str(file) for file in files.values() if not file.is_file()]
    if missing:
        raise BuildMismatch(f"{missing[0]} is missing")
    return files


def matching_build(directory: Path) -> tuple[tuple[str, ...], dict[str, Path]]:
    """The compiled module names and the files to load for them, or `BuildMismatch`."""
    manifest = read_manifest(directory)
    try:
        files = build_files(directory, manifest, SOURCE_ROOT)
        return tuple(sorted(manifest["modules"])), files
    except (KeyError, TypeError, AttributeError) as error:
        raise BuildMismatch(f"malformed {directory / MANIFEST}: {error!r}") from None


def install(directory: Path | None = None, mode: str | None = None) -> NativeStatus:
    """Put a matching build's modules ahead of the pure ones on `sys.meta_path`; runs once, from
    `agent/__init__.py`, before any of them is imported."""
    chosen = (mode or os.environ.get("SIDECAR_AGENT_NATIVE") or "auto").strip().lower()
    where = directory or default_directory()
    warning = ""
    if chosen not in _MODES:
        # Before any logging or config exists: said wherever the status is shown.
        warning = f"SIDECAR_AGENT_NATIVE={chosen!r} is not auto, off or require: taken as auto"
        chosen = "auto"
    if chosen in _OFF:
        return NativeStatus("off", str(where), (), "SIDECAR_AGENT_NATIVE is off")
    try:
        modules, files = matching_build(where)
    except BuildMismatch as error:
        if chosen == "require":
            raise ImportError(f"SIDECAR_AGENT_NATIVE=require: {error}") from None
        return NativeStatus(chosen, str(where), (), str(error), warning)
    sys.meta_path.insert(0, _NativeFinder(files))
    return NativeStatus(chosen, str(where), modules, "", warning)


def compiled(module: ModuleType) -> bool:
    """Whether a loaded module is the compiled one."""
    return str(getattr(module, "__file__", "")).endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES)
    )


STATUS = install()
