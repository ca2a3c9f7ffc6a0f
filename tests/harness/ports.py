"""Loopback ports for test servers that nobody else will take while a test holds them.

The usual trick, binding 127.0.0.1:0 and closing, hands out a port from the kernel's
ephemeral range: between our close() and the server's bind() the kernel may give that very
port to any outgoing connection on the machine as its source port, and during an outage test
(server stopped, restarted on the same port) the window is seconds long. So we pick ports
BELOW the ephemeral range, where the kernel never auto-assigns, check that they bind, and
claim each with an flock on a per-port file so that concurrent pytest processes on the same
machine (parallel runs, other checkouts) never hand out the same port. A claim lasts until
`release_port()` or the end of the process (the kernel drops the lock with the fd).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

from tests.harness.errors import HarnessError

LOOPBACK = "127.0.0.1"
_LOWEST_PORT = 10_000
PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "sidecar-agent-test-ports"
_ATTEMPTS = 500

_claims: dict[int, int] = {}  # port -> fd holding its flock
_claims_lock = threading.Lock()


def ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux default


def _candidate_range() -> range:
    ephemeral_low, ephemeral_high = ephemeral_port_range()
    if ephemeral_low - _LOWEST_PORT >= 1_000:
        return range(_LOWEST_PORT, ephemeral_low)
    return range(ephemeral_high + 1, 65_536)  # ephemeral range starts low: use the top


def _bindable(port: int) -> bool:
    # Without SO_REUSEADDR, so a port still in TIME_WAIT from an earlier server is refused:
    # whatever the server under test does about reuse, it can bind what we hand out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _try_claim(port: int) -> int | None:
    PORT_LOCK_DIR.mkdir(mode=0o777, parents=True, exist_ok=True)
    fd = os.open(PORT_LOCK_DIR / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def free_port() -> int:
    """Return a loopback TCP port that is free now and reserved for this process."""
    candidates = _candidate_range()
    with _claims_lock:
        for _ in range(_ATTEMPTS):
            port = random.choice(candidates)
            if port in _claims:
                continue
            fd = _try_claim(port)
            if fd is None:
                continue
            if not _bindable(port):
                os.close(fd)
                continue
            _claims[port] = fd
            return port
    raise HarnessError(f"no free loopback port found in {_ATTEMPTS} tries in {candidates}")


def release_port(port: int) -> None:
    """Give a port claimed by free_port() back; unknown ports are ignored."""
    with _claims_lock:
        fd = _claims.pop(port, None)
    if fd is not None:
        os.close(fd)  # closing the fd drops the flock


def claimed_ports() -> frozenset[int]:
    with _claims_lock:
        return frozenset(_claims)
