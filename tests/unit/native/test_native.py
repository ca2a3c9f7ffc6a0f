"""The compiled-module loader (agent.native) and builder (agent.native.build)."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agent
from agent import native
from agent.native import build as native_build

SOURCE = "agent/core/units.py"


def _manifest(directory: Path, **changes: object) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    manifest: dict[str, object] = {
        "format": native.MANIFEST_FORMAT,
        "suffix": suffix,
        "modules": {"agent.core.units": {"source": SOURCE, "file": f"agent/core/units{suffix}"}},
        "sources": {
            source: native.source_digest(native.SOURCE_ROOT / source)
            for source in native.package_sources(native.SOURCE_ROOT)
        },
        "shared": {},
    }
    manifest.update(changes)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / native.MANIFEST).write_text(json.dumps(manifest))


def _refused(directory: Path) -> str:
    status = native.install(directory, mode="auto")
    assert not status.loaded
    return status.reason


def test_without_a_build_the_agent_runs_pure_python(tmp_path: Path) -> None:
    status = native.install(tmp_path / "none", mode="auto")
    assert not status.loaded
    assert "no build" in status.reason
    assert status.describe().startswith("pure Python (no build in")


def test_require_refuses_to_fall_back(tmp_path: Path) -> None:
    with pytest.raises(ImportError, match="SIDECAR_AGENT_NATIVE=require: no build in"):
        native.install(tmp_path / "none", mode="require")


def test_an_unknown_mode_is_taken_as_auto_and_said(tmp_path: Path) -> None:
    status = native.install(tmp_path / "none", mode="requir")
    assert (status.mode, status.loaded) == ("auto", False)
    assert status.describe() == (
        f"pure Python (no build in {tmp_path / 'none'}); "
        "SIDECAR_AGENT_NATIVE='requir' is not auto, off or require: taken as auto"
    )


def test_an_unreadable_source_keeps_the_build_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(native.SOURCE_ROOT / "agent" / "core", root / "agent" / "core")
    sources = native.package_sources(root)
    digests = {source: native.source_digest(root / source) for source in sources}
    _manifest(tmp_path / "build", sources=digests)
    (root / SOURCE).unlink()
    (root / SOURCE).mkdir()  # listed, but reading it fails
    manifest = native.read_manifest(tmp_path / "build")
    with pytest.raises(native.BuildMismatch, match=f"{SOURCE} is unreadable"):
        native.build_files(tmp_path / "build", manifest, root)


def test_off_never_reads_the_directory(tmp_path: Path) -> None:
    _manifest(tmp_path)
    status = native.install(tmp_path, mode="off")
    assert (status.mode, status.loaded) == ("off", False)
    assert native.install(tmp_path, mode="0").mode == "off"


def test_a_build_of_other_sources_is_not_used(tmp_path: Path) -> None:
    """Any source of the package counts, not only the compiled ones: compiled code holds
    what it took from the modules it imports."""
    sources = native.package_sources(native.SOURCE_ROOT)
    digests = {source: native.source_digest(native.SOURCE_ROOT / source) for source in sources}
    _manifest(tmp_path, sources={**digests, "agent/config/tree.py": "0" * 64})
    assert _refused(tmp_path) == "agent/config/tree.py changed since the build"
    _manifest(tmp_path, sources={**digests, "agent/gone.py": "0" * 64})
    assert _refused(tmp_path) == "agent/gone.py was added or removed since the build"
    del digests["agent/app.py"]
    _manifest(tmp_path, sources=digests)
    assert _refused(tmp_path) == "agent/app.py was added or removed since the build"


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    _manifest(tmp_path, suffix=".cpython-39-x86_64-linux-gnu.so")
    assert "built for .cpython-39" in _refused(tmp_path)


def test_a_build_missing_a_file_is_not_used(tmp_path: Path) -> None:
    _manifest(tmp_path)
    assert _refused(tmp_path).endswith("is missing")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"format": 99}',
        json.dumps({"format": 1, "suffix": importlib.machinery.EXTENSION_SUFFIXES[0]}),
        json.dumps(
            {"format": 1, "suffix": importlib.machinery.EXTENSION_SUFFIXES[0], "modules": 3}
        ),
    ],
)
def test_an_unreadable_manifest_is_not_used(tmp_path: Path, text: str) -> None:
    (tmp_path / native.MANIFEST).write_text(text)
    reason = _refused(tmp_path)
    assert "manifest" in reason or "unreadable" in reason


def test_a_real_build_loads_in_place_of_the_source_and_is_kept_while_current(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "native"
    modules = (SOURCE, "agent/core/budget.py")
    said = native_build.build(directory, modules, extensions=())
    assert said == f"built 2 compiled modules into {directory}"
    assert native_build.build(directory, modules, extensions=()).startswith("up to date")
    # Another module list is another build.
    assert not native_build.up_to_date(directory, (SOURCE,), ())
    assert not native_build.up_to_date(directory, modules)  # with the C extensions
    # The build holds the manifest, one shim a module and the one library they load.
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files = sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*.*"))
    shared = [file for file in files if file.endswith(f"__mypyc{suffix}")]
    assert len(shared) == 1 and "/" not in shared[0]
    expected = [native.MANIFEST, f"agent/core/budget{suffix}", f"agent/core/units{suffix}"]
    assert sorted(set(files) - set(shared)) == sorted(expected)
    probe = (
        "import agent, agent.core.units as u; "
        "print(agent.native.STATUS.modules, agent.native.compiled(u), u.parse_size('2KiB'))"
    )
    env = {**os.environ, "SIDECAR_AGENT_NATIVE_DIR": str(directory)}
    env["SIDECAR_AGENT_NATIVE"] = "require"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [
        "('agent.core.budget',",
        "'agent.core.units')",
        "True",
        "2048",
    ]


def test_a_c_extension_builds_and_loads_in_place_of_its_pure_twin(tmp_path: Path) -> None:
    directory = tmp_path / "native"
    extension = "agent/messages/msgpackjson.c"
    said = native_build.build(directory, (), extensions=(extension,))
    assert said == f"built 1 compiled modules into {directory}"
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files = sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*.*"))
    assert files == sorted([native.MANIFEST, f"agent/messages/msgpackjson{suffix}"])
    manifest = native.read_manifest(directory)
    assert manifest["modules"]["agent.messages.msgpackjson"]["source"] == extension
    assert extension in manifest["sources"]  # an edited C source makes the build stale
    probe = (
        "import agent, agent.messages.msgpackjson as m; "
        "print(agent.native.STATUS.modules, agent.native.compiled(m), m.AVAILABLE, "
        "bytes(m.data_texts(bytes.fromhex('81a46461746101'), 1)[0]))"
    )
    env = {**os.environ, "SIDECAR_AGENT_NATIVE_DIR": str(directory)}
    env["SIDECAR_AGENT_NATIVE"] = "require"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["('agent.messages.msgpackjson',)", "True", "1", "b'1'"]


def test_an_edited_c_source_makes_the_build_stale(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(native.SOURCE_ROOT / "agent" / "messages", root / "agent" / "messages")
    c_source = "agent/messages/msgpackjson.c"
    assert c_source in native.package_sources(root)
    digests = {s: native.source_digest(root / s) for s in native.package_sources(root)}
    _manifest(tmp_path / "build", sources=digests)
    with (root / c_source).open("a") as edited:
        edited.write("/* edited */\n")
    manifest = native.read_manifest(tmp_path / "build")
    with pytest.raises(native.BuildMismatch, match=f"{c_source} changed since the build"):
        native.build_files(tmp_path / "build", manifest, root)


def test_the_suite_runs_the_modules_it_says_it_runs() -> None:
    """Under `SIDECAR_AGENT_NATIVE=require` (scripts/test) every listed module is the compiled
    one; under `off`, none is."""
    status = agent.native.STATUS
    built = (*native_build.MODULES, *native_build.EXTENSIONS)
    names = [native_build.module_name(source) for source in built]
    kinds = {native.compiled(importlib.import_module(name)) for name in names}
    assert kinds == {status.loaded}
    if os.environ.get("SIDECAR_AGENT_NATIVE") == "require":
        assert status.modules == tuple(sorted(names))


def test_its_variables_are_not_taken_for_unknown_config_keys() -> None:
    from agent.config.load import load_config

    env = {"SIDECAR_AGENT_NATIVE": "off", "SIDECAR_AGENT_NATIVE_DIR": "/x"}
    assert load_config(environ=env) == load_config(environ={})
