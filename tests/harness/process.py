"""A child server process with its output in a log file, and waiting for things to come up."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually_sync

# Every process still running when the interpreter exits is killed, so an aborted test run
# (KeyboardInterrupt, a fixture that never got to tear down) leaves no server holding ports.
_live: set[ManagedProcess] = set()


def _kill_leftovers() -> None:
    for process in list(_live):
        process.kill()


atexit.register(_kill_leftovers)


class ManagedProcess:
    """One server binary run as a child; stdout and stderr are appended to `log_path`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset_at_start = 0

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exit_reason(self) -> str | None:
        """Why the process is gone (with its log tail), or None while it runs."""
        if self._popen is None or self._popen.poll() is None:
            return None
        return f"{self.name} exited with code {self._popen.returncode}\n{self.log_tail()}"

    def start(self) -> None:
        if self.running:
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._log_offset_at_start = log.tell()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
            )
        _live.add(self)

    def start_and_wait(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Start, then wait until `ready`. If it never is, the process is killed and the error
        carries its log tail (as it does when the process exits by itself)."""
        self.start()
        try:
            eventually_sync(ready, timeout=timeout, what=what, abort=self.exit_reason)
        except AssertionError as error:
            if not self.running:  # it exited: the error already carries its log tail
                raise HarnessError(str(error)) from None
            self.kill()
            raise HarnessError(f"{error}\n{self.log_tail()}") from None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (negative: killed by that signal)."""
        return self._popen.poll() if self._popen is not None else None

    def send_signal(self, signum: signal.Signals) -> None:
        """Deliver `signum` if the process is running; no wait (see `wait`)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit code; raises subprocess.TimeoutExpired if still running after `timeout`."""
        if self._popen is None:
            raise HarnessError(f"{self.name} was never started")
        code = self._popen.wait(timeout)
        _live.discard(self)
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (a graceful shutdown); SIGKILL if it takes longer than `timeout`.
        Returns the exit code, None if never started."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL and wait: a crash, nothing flushed. Returns the exit code."""
        return self._signal_and_wait(signal.SIGKILL, 10.0)

    def _signal_and_wait(self, signum: signal.Signals, timeout: float) -> int | None:
        if self._popen is None:
            return None
        self.send_signal(signum)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self.wait(timeout=10.0)

    def output_since_start(self) -> str:
        """What this run printed (the log file is shared with earlier runs: restarts append)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset_at_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path}:\n{tail}"


def executable_or_fail(path: str | os.PathLike[str], hint: str) -> Path:
    """`path` as a Path if it is an executable file, else a HarnessError carrying `hint`."""
    candidate = Path(path)
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        raise HarnessError(f"{candidate} is not an executable file. {hint}")
    return candidate
