"""What the harness's servers (redis-server, Jaeger) share: one ManagedProcess at a time on
claimed loopback ports, one start/stop/kill/restart/close contract, and a first start that moves
to fresh ports when one was taken between claiming it and the server binding it."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from tests.harness.errors import HarnessError
from tests.harness.process import ManagedProcess

# A port found free can still be taken before the server binds it; try fresh ones this often.
_BIND_ATTEMPTS = 3


class LoopbackServer:
    """Base of RedisServer and Jaeger. Stop, start and restart keep the ports, so clients see
    an outage and then the same server back.

    A subclass sets `name` and `start_timeout` and writes `_start_once` (set `_process`, start
    it and wait until ready), `_move_to_fresh_ports` and `close` (stop, release the ports).
    """

    name = "server"
    start_timeout = 10.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._process: ManagedProcess | None = None
        self._ever_started = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def start(self, timeout: float | None = None) -> None:
        """Start and wait until ready (`start_timeout` unless given). The first start may move
        to fresh ports if one was taken meanwhile; later starts keep them, as clients expect."""
        if self.running:
            raise HarnessError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_BIND_ATTEMPTS):
            try:
                self._start_once(self.start_timeout if timeout is None else timeout)
            except HarnessError:
                retry = not self._ever_started and self._can_move_ports() and self._lost_port_race()
                if not retry or attempt == _BIND_ATTEMPTS - 1:
                    raise
                self._move_to_fresh_ports()
            else:
                self._ever_started = True
                return

    def _start_once(self, timeout: float) -> None:
        raise NotImplementedError

    def _can_move_ports(self) -> bool:
        """False when the ports were given by the caller: they are not ours to change."""
        return True

    def _move_to_fresh_ports(self) -> None:
        raise NotImplementedError

    def _lost_port_race(self) -> bool:
        if self._process is None:
            return False
        return "address already in use" in self._process.output_since_start().lower()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: a clean shutdown."""
        if self._process is not None:
            self._process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self._process is not None:
            self._process.kill()

    def restart(self, timeout: float | None = None) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
