"""Build the compiled modules: `python -m agent.native.build [--dir D] [--force]`.

Compiles `MODULES` with mypyc (part of mypy; needs a C compiler and the Python headers) and the
hand-written C extensions `EXTENSIONS` with the C compiler Python was built with, from a copy
of the installed `agent` package, so a checkout never holds extension files that would shadow
its sources, and writes them with a manifest of the sources' SHA-256 into the build directory
(see `agent.native`). A build that is already there for the same sources,
interpreter and module list is kept. The new build replaces the old one only once complete.
Run it with `SIDECAR_AGENT_NATIVE` unset or `off`: it imports the agent, which under `require`
refuses to start without the build it is about to make.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.native import (
    MANIFEST,
    MANIFEST_FORMAT,
    SOURCE_ROOT,
    BuildMismatch,
    default_directory,
    matching_build,
    package_sources,
    source_digest,
)

# The modules that run per record or per request, relative to the directory holding `agent/`.
# Pure on purpose: decode/otlpstructs.py and decode/sdkstructs.py (compiled, msgspec no longer
# sees their classes as Structs, so every line would leave the fast path), decode/assemble.py
# (its assemblers are weakly referenced, which a compiled class cannot be), messages/bodystructs
# (Structs), messages/redis/resp and sentinel (OSError subclasses). The message path's
# coroutine and thread modules (fastlane, publish, intake, dedupe, sender, diskqueue queue and
# writer) stay pure too: compiled they measured no clear gain on a single publish, the batch
# gain is the codec's and layout's, and a compiled coroutine keeps a handled exception in the
# thread's state (see docs/architecture.md), so the code that holds the delivery guarantees
# runs as the interpreter runs it.
MODULES: tuple[str, ...] = (
    "agent/spans/decode/auto.py",
    "agent/spans/decode/common.py",
    "agent/spans/decode/container.py",
    "agent/spans/decode/direct.py",
    "agent/spans/decode/direct_jobfirst.py",
    "agent/spans/decode/direct_otlpstructs.py",
    "agent/spans/decode/direct_sdk.py",
    "agent/spans/decode/direct_sdkstructs.py",
    "agent/spans/decode/framing.py",
    "agent/spans/decode/jobfirst.py",
    "agent/spans/decode/jobfirst_mapping.py",
    "agent/spans/decode/jobfirst_open.py",
    "agent/spans/decode/jobfirst_parse.py",
    "agent/spans/decode/jobfirst_typed.py",
    "agent/spans/decode/lines.py",
    "agent/spans/decode/lookups.py",
    "agent/spans/decode/otelsdk.py",
    "agent/spans/decode/otlpjson.py",
    "agent/spans/decode/podpath.py",
    "agent/spans/decode/pretty.py",
    "agent/spans/decode/registry.py",
    "agent/spans/decode/spanjson.py",
    "agent/spans/encode/direct.py",
    "agent/spans/encode/protobuf.py",
    "agent/spans/encode/protojson.py",
    "agent/spans/encode/resources.py",
    "agent/spans/encode/wire.py",
    "agent/spans/model.py",
    "agent/spans/export/outbound.py",
    "agent/spans/export/batcher.py",
    "agent/messages/batchtexts.py",
    "agent/messages/codec.py",
    "agent/messages/dapr.py",
    "agent/messages/layout.py",
    "agent/messages/message.py",
    "agent/messages/partition.py",
    "agent/messages/publishhead.py",
    "agent/messages/record.py",
    "agent/messages/topics.py",
    "agent/messages/redis/slots.py",
    "agent/core/diskqueue/frames.py",
    "agent/core/diskqueue/segment.py",
)

# C extensions written by hand, each the twin of the pure module of the same name (which runs
# without a build and gives the same results): loaded in its place like a compiled module.
# messages/msgpackjson.c writes a msgpack body's `data` values as JSON text (the codec's
# msgpack route); its pure twin handles nothing, which leaves the typed route to do it.
# spans/linescan.c counts a read's lines and finds where each pretty-printed object closes;
# its pure twin does the same with bytes.count and a regular expression.
# spans/decode/jobfirst_scan.c: a JobFirst line's marker and key-order searches (memmem).
# core/diskqueue/commitio.c does a commit's write, data sync and event-loop wake-up with the
# GIL released once; its pure twin does the same steps in Python.
EXTENSIONS: tuple[str, ...] = (
    "agent/messages/msgpackjson.c",
    "agent/spans/linescan.c",
    "agent/spans/decode/jobfirst_scan.c",
    "agent/core/diskqueue/commitio.c",
)
# -Wall -Wextra: the extensions compile without a warning (the build prints any).
_C_FLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Wextra")


def module_name(source: str) -> str:
    return source.removesuffix(".py").removesuffix(".c").replace("/", ".")


def up_to_date(
    directory: Path, modules: Sequence[str], extensions: Sequence[str] = EXTENSIONS
) -> bool:
    try:
        built, _ = matching_build(directory)
    except BuildMismatch:
        return False
    return built == tuple(sorted(module_name(source) for source in (*modules, *extensions)))


def _copy_sources(into: Path) -> None:
    shutil.copytree(
        SOURCE_ROOT / "agent",
        into / "agent",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.pyc"),
    )


def _compile(work: Path, modules: Sequence[str]) -> None:
    """Run mypyc in `work` (it leaves the extension files beside the copied sources). The
    dependencies without type information (msgpack, hiredis, ...) are typed `Any`, as the
    project's own mypy configuration has them."""
    _run([sys.executable, "-m", "mypyc", "--ignore-missing-imports", *modules], work, "mypyc")


def _compile_extension(work: Path, source: str) -> None:
    """Compile one C extension in `work`, beside its source."""
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    target = source.removesuffix(".c") + importlib.machinery.EXTENSION_SUFFIXES[0]
    done = _run(
        [*compiler, *_C_FLAGS, f"-I{include}", source, "-o", target], work, f"compiling {source}"
    )
    if done.stderr:
        sys.stderr.write(done.stderr)


def _run(command: list[str], work: Path, what: str) -> subprocess.CompletedProcess[str]:
    """Run a build command in `work`; a failure raises with the end of its output."""
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log = done.stdout + done.stderr
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{log[-4000:]}")
    return done


def _collect(work: Path, built: Sequence[str], into: Path) -> dict[str, Any]:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    entries: dict[str, dict[str, str]] = {}
    for source in built:
        relative = source.removesuffix(".py").removesuffix(".c") + suffix
        (into / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(work / relative, into / relative)
        entries[module_name(source)] = {"source": source, "file": relative}
    # The library the modules' shims load: `<hash>__mypyc` at the top for several modules,
    # `<module>__mypyc` beside a single one. setuptools leaves a second copy of it under
    # `build/`, which no shim loads.
    shared: dict[str, str] = {}
    for path in work.rglob(f"*__mypyc{suffix}"):
        relative = path.relative_to(work).as_posix()
        if relative.startswith("build/"):
            continue
        shared[module_name(relative.removesuffix(suffix) + ".py")] = relative
        (into / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, into / relative)
    return {
        "format": MANIFEST_FORMAT,
        "suffix": suffix,
        "python": sys.version.split()[0],
        "built_at": int(time.time()),
        "modules": entries,
        "sources": {source: source_digest(work / source) for source in package_sources(work)},
        "shared": shared,
    }


def build(
    directory: Path,
    modules: Sequence[str] = MODULES,
    *,
    extensions: Sequence[str] = EXTENSIONS,
    force: bool = False,
) -> str:
    """Build into `directory` unless a build of these sources is there; say what was done."""
    count = len(modules) + len(extensions)
    if not force and up_to_date(directory, modules, extensions):
        return f"up to date: {count} compiled modules in {directory}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sidecar-native-") as scratch:
        work = Path(scratch) / "src"
        _copy_sources(work)
        if modules:
            _compile(work, modules)
        for source in extensions:
            _compile_extension(work, source)
        staged = Path(tempfile.mkdtemp(prefix=".native-", dir=directory.parent))
        try:
            staged.chmod(0o755)  # mkdtemp's 0700 would keep it from the agent's own uid
            manifest = _collect(work, (*modules, *extensions), staged)
            (staged / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    if directory.exists():
        retired = directory.with_name(f".{directory.name}-old-{time.time_ns()}")
        directory.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    staged.rename(directory)
    return f"built {count} compiled modules into {directory}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.native.build", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="build directory")
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    args = parser.parse_args(argv)
    try:
        said = build(args.dir or default_directory(), force=args.force)
    except (RuntimeError, OSError) as error:
        sys.stderr.write(f"native build failed: {error}\n")
        return 1
    sys.stdout.write(said + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
