"""The closest honest check of the image without a Docker engine.

The Dockerfile's own build-stage RUN instruction is run (image paths mapped into a temporary
directory) on exactly the files its COPY instructions take from the build context after
.dockerignore; then the runtime stage's ENTRYPOINT + CMD and HEALTHCHECK command are run from
the resulting venv with the runtime stage's ENV. As root (CI, developer machines here), the
agent also runs as the image's numeric USER and as PID 1 of a fresh PID namespace, so a
missing SIGTERM handler (PID 1 ignores default-action signals) or a write outside the data
volume (the uid owns nothing else) fails the test. The venv is built over a Python that the
image's uid can reach (the image's is in /usr/local; a pyenv Python under /root is not).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import __version__
from agent.native.build import EXTENSIONS, MODULES
from tests.deploy import dockerfile
from tests.deploy.dockerfile import REPO_ROOT
from tests.harness import ManagedProcess, RedisServer, eventually_sync, free_port
from tests.harness.agent_process import clean_environment

pytestmark = pytest.mark.integration

IMAGE_PATHS = ("/opt/sidecar-agent", "/var/lib/sidecar-agent", "/dist", "/src")
AS_ROOT = os.geteuid() == 0


def reachable_by_anyone(path: Path) -> bool:
    """Every directory above `path` is searchable by others (as in the image's /usr/local)."""
    resolved = path.resolve()
    return all(parent.stat().st_mode & 0o001 for parent in resolved.parents)


def base_interpreter() -> Path:
    """A Python 3.11 the image's uid can run: this one unless it lives under a private home
    (pyenv in /root, as on this machine), else the distribution's."""
    candidates = [Path(sys._base_executable), Path("/usr/local/bin/python3.11")]
    candidates.append(Path("/usr/bin/python3.11"))
    for candidate in candidates:
        if candidate.exists() and reachable_by_anyone(candidate):
            return candidate
    return Path(sys._base_executable)  # as root the uid switch is then skipped


class ImageLikeInstall:
    """A temporary directory standing in for the image's filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stages = dockerfile.load()

    def host_path(self, image_path: str) -> str:
        return str(self.root / image_path.lstrip("/"))

    def map_paths(self, text: str) -> str:
        for image_path in IMAGE_PATHS:
            text = text.replace(image_path, self.host_path(image_path))
        return text

    def copy_context(self) -> Path:
        build = self.stages[0]
        workdir = Path(self.host_path(build.last("WORKDIR").args))
        context = dockerfile.build_context()
        for item in build.all("COPY"):
            *sources, destination = item.args.split()
            for source in sources:
                for relative in context:
                    if relative != source and not relative.startswith(source + "/"):
                        continue
                    inside = (
                        relative
                        if destination == "./"
                        else relative.replace(source, destination.removeprefix("./"), 1)
                    )
                    target = workdir / inside
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO_ROOT / relative, target)
        return workdir

    def run_build_stage(self, log: Path) -> None:
        build = self.stages[0]
        workdir = self.copy_context()
        env = clean_environment(build.env())
        # Same command, but let pip reuse this machine's download cache (the image build
        # has no cache to reuse, so the Dockerfile turns it off).
        env.pop("PIP_NO_CACHE_DIR", None)
        # The image's `python` is the base image's interpreter, which has pip: a builder
        # venv over a Python the image's uid can reach plays that part.
        builder = self.root / "builder"
        subprocess.run([str(base_interpreter()), "-m", "venv", str(builder)], check=True)
        env["PATH"] = f"{builder / 'bin'}:{env['PATH']}"
        for item in build.all("RUN"):
            with log.open("ab") as out:
                result = subprocess.run(
                    ["sh", "-ec", self.map_paths(item.args)],
                    cwd=workdir,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=400,
                    check=False,
                )
            assert result.returncode == 0, f"build RUN failed:\n{log.read_text()[-3000:]}"

    def runtime_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = clean_environment({})
        for key, value in self.stages[-1].env().items():
            env[key] = self.map_paths(value).replace("${PATH}", "/usr/bin:/bin")
        env["HOME"] = "/nonexistent"
        env.update(extra)
        return env

    @property
    def switches_user(self) -> bool:
        return AS_ROOT and reachable_by_anyone(base_interpreter())

    def as_image_user(self, argv: list[str]) -> list[str]:
        if not self.switches_user:
            return argv
        uid, gid = self.stages[-1].last("USER").args.split(":")
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        return setpriv + argv

    @property
    def uid(self) -> int:
        return int(self.stages[-1].last("USER").args.split(":")[0])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageLikeInstall]:
    # Not under pytest's basetemp: that is mode 0700, and the image's uid must reach the venv.
    root = Path(tempfile.mkdtemp(prefix="sidecar-image-"))
    root.chmod(0o755)
    install = ImageLikeInstall(root)
    install.run_build_stage(tmp_path_factory.mktemp("image-build") / "build.log")
    data = Path(install.host_path("/var/lib/sidecar-agent"))
    data.mkdir(parents=True, mode=0o750)
    if install.switches_user:
        os.chown(data, install.uid, install.uid)
    yield install
    shutil.rmtree(root, ignore_errors=True)


def run(argv: list[str], env: dict[str, str], cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def child_of(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, f"unshare should have one child, has {children}"
    return int(children[0])


@pytest.mark.timeout(600)
def test_wheel_installs_with_the_console_script(image: ImageLikeInstall) -> None:
    venv_bin = Path(image.host_path("/opt/sidecar-agent/bin"))
    assert (venv_bin / "sidecar-agent").exists()
    assert not (venv_bin / "pip").exists(), "the build stage removes pip from the runtime venv"
    env = image.runtime_env({})
    cwd = image.host_path("/var/lib/sidecar-agent")
    version = run(image.as_image_user(["sidecar-agent", "version"]), env, cwd)
    assert version.returncode == 0, version.stderr
    # The build stage compiled the hot modules into the venv, and the agent loads them.
    native = image.host_path("/opt/sidecar-agent/sidecar-agent-native")
    assert version.stdout.splitlines() == [
        f"sidecar-agent {__version__}",
        f"{len(MODULES) + len(EXTENSIONS)} compiled modules from {native}",
    ]
    # The installed package is the wheel's copy, not this checkout.
    where = run([f"{venv_bin}/python", "-c", "import agent; print(agent.__file__)"], env, cwd)
    assert where.stdout.startswith(image.host_path("/opt/sidecar-agent")), where


@pytest.mark.timeout(600)
def test_entrypoint_as_pid_1_healthcheck_and_sigterm(
    image: ImageLikeInstall, redis_server: RedisServer, tmp_path: Path
) -> None:
    runtime = image.stages[-1]
    admin_port = free_port()
    env = image.runtime_env(
        {
            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "SIDECAR_PROXY_LISTEN": f"127.0.0.1:{free_port()}",
            "REDIS_URL": redis_server.url,
        }
    )
    data_dir = image.host_path("/var/lib/sidecar-agent")
    entrypoint = dockerfile.exec_form(runtime.last("ENTRYPOINT").args)
    command = entrypoint + dockerfile.exec_form(runtime.last("CMD").args)
    pid_namespace = ["unshare", "--pid", "--fork", "--mount-proc"] if AS_ROOT else []
    agent = ManagedProcess(
        "image-entrypoint",
        pid_namespace + image.as_image_user(command),
        tmp_path / "agent.log",
        env=env,
        cwd=Path(data_dir),
    )
    healthcheck = image.as_image_user(dockerfile.healthcheck_command(runtime))
    agent.start()
    try:
        eventually_sync(
            lambda: run(healthcheck, env, data_dir).returncode == 0,
            timeout=30,
            what="the image's HEALTHCHECK command to pass",
            interval=0.3,
            abort=agent.exit_reason,
        )
        assert agent.pid is not None
        agent_pid = child_of(agent.pid) if AS_ROOT else agent.pid
        if AS_ROOT:
            status = Path(f"/proc/{agent_pid}/status").read_text()
            nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
            assert nspid.split()[-1] == "1", f"the agent is not PID 1 in its namespace: {nspid}"
            if image.switches_user:
                assert Path(f"/proc/{agent_pid}/status").stat().st_uid == image.uid
        os.kill(agent_pid, signal.SIGTERM)
        code = agent.wait(timeout=30)
    finally:
        agent.kill()
    assert code == 0, agent.log_tail()
    assert "agent stopped" in agent.output_since_start()
    # The agent has exited (wait returned), so nothing answers the healthcheck any more.
    assert run(healthcheck, env, data_dir).returncode != 0, "healthcheck passes with no agent"
    if image.switches_user:
        written = [p for p in image.root.rglob("*") if p.stat().st_uid == image.uid]
        outside = [p for p in written if not str(p).startswith(data_dir)]
        assert written and not outside, f"files written outside the data volume: {outside}"
