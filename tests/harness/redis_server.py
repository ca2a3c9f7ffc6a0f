"""Real redis-server processes on loopback: a single server and a small Redis Cluster."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually_sync
from tests.harness.ports import LOOPBACK, free_port, release_port
from tests.harness.process import ManagedProcess, executable_or_fail
from tests.harness.server import LoopbackServer

_INSTALL_HINT = (
    "Install it with `apt-get install -y redis-server` (scripts/test does this) "
    "or set REDIS_SERVER_BIN."
)
# No persistence unless a test asks for it: fast, and nothing left on disk between runs.
DEFAULT_ARGS: tuple[str, ...] = ("--save", "", "--appendonly", "no")
CLUSTER_SLOTS = 16_384


def find_redis_binary() -> Path:
    """The redis-server binary: REDIS_SERVER_BIN if set, else the one on PATH."""
    override = os.environ.get("REDIS_SERVER_BIN")
    if override:
        return executable_or_fail(override, _INSTALL_HINT)
    found = shutil.which("redis-server")
    if found is None:
        raise HarnessError(f"redis-server not found on PATH. {_INSTALL_HINT}")
    return Path(found)


class RedisServer(LoopbackServer):
    """A redis-server on 127.0.0.1 in its own directory; restarts keep the port and data dir.
    It is ready when PING answers; stop() is a clean shutdown (an AOF or RDB, if configured,
    is flushed), kill() a crash.

    `extra_args` come after DEFAULT_ARGS, so e.g. ("--appendonly", "yes") overrides them.
    """

    name = "redis-server"
    start_timeout = 10.0

    def __init__(
        self,
        workdir: Path,
        *,
        extra_args: Sequence[str] = (),
        password: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.password = password
        self.extra_args = tuple(extra_args)
        self.host = LOOPBACK
        self._owns_port = port is None
        self.port = port if port is not None else free_port()
        self._binary = find_redis_binary()
        self._clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def _argv(self) -> list[str]:
        argv = [str(self._binary), "--port", str(self.port), "--bind", self.host]
        argv += ["--dir", str(self.workdir), "--daemonize", "no", *DEFAULT_ARGS]
        argv += self.extra_args
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def _start_once(self, timeout: float) -> None:
        process = ManagedProcess("redis-server", self._argv(), self.log_path)
        self._process = process
        process.start_and_wait(self.ping, timeout=timeout, what=f"redis PING on {self.url}")

    def _can_move_ports(self) -> bool:
        return self._owns_port

    def _move_to_fresh_ports(self) -> None:
        release_port(self.port)
        self.port = free_port()

    def ping(self) -> bool:
        """True when the server answers PING now (a fresh connection, nothing kept)."""
        try:
            with self.client(socket_timeout=0.25, socket_connect_timeout=0.25, track=False) as c:
                return bool(c.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def client(self, *, track: bool = True, **kwargs: Any) -> redis.Redis:
        """A sync client for this server; tracked clients are closed by close().

        No retries unless asked (`retry=...`): redis-py's default retries turn a refused
        connection into seconds of backoff, and a test checking Redis should see an outage
        at once. A connection broken by a restart is still replaced when next used.
        """
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(kwargs)
        client = redis.Redis(**options)
        if track:
            self._clients.append(client)
        return client

    def close(self) -> None:
        """Stop the server, close tracked clients and release the port. Idempotent."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.stop()
        if self._owns_port:
            release_port(self.port)


class RedisClusterNodes:
    """`masters` cluster-enabled redis-servers, joined, with the 16384 slots split evenly."""

    def __init__(self, workdir: Path, *, masters: int = 3, extra_args: Sequence[str] = ()) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.workdir = workdir
        self._bus_ports = [free_port() for _ in range(masters)]
        self.nodes = [
            RedisServer(workdir / f"node-{index}", extra_args=self._node_args(bus_port, extra_args))
            for index, bus_port in enumerate(self._bus_ports)
        ]
        self._clients: list[redis.cluster.RedisCluster] = []

    @staticmethod
    def _node_args(bus_port: int, extra_args: Sequence[str]) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus_port),
            "--cluster-node-timeout", "2000",
            *extra_args,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """A URL for any one node; cluster clients discover the rest."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        self._create_cluster()
        eventually_sync(self.is_ok, timeout=timeout, what="cluster_state:ok on every node")

    def _create_cluster(self) -> None:
        # What `redis-cli --cluster create` does, minus its one-second polling sleeps: split
        # the slots evenly, give each master its own config epoch (else the nodes spend a
        # while resolving the collision), and introduce every node to the first one.
        bounds = [CLUSTER_SLOTS * index // len(self.nodes) for index in range(len(self.nodes) + 1)]
        first = self.nodes[0]
        for index, node in enumerate(self.nodes):
            with node.client(track=False) as client:
                client.execute_command(
                    "CLUSTER ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1
                )
                client.execute_command("CLUSTER SET-CONFIG-EPOCH", index + 1)
        with first.client(track=False) as client:
            for node, bus_port in zip(self.nodes[1:], self._bus_ports[1:], strict=True):
                client.execute_command("CLUSTER MEET", node.host, node.port, bus_port)

    def is_ok(self) -> bool:
        """Every node says cluster_state:ok and knows every other node."""
        for node in self.nodes:
            with node.client(track=False, decode_responses=True) as client:
                info = client.execute_command("CLUSTER INFO")  # redis-py parses it to a dict
                if info.get("cluster_state") != "ok":
                    return False
                if info.get("cluster_known_nodes") != str(len(self.nodes)):
                    return False
        return True

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A cluster client (closed by close()) that follows MOVED/ASK redirections."""
        first = self.nodes[0]
        client = redis.cluster.RedisCluster(host=first.host, port=first.port, **kwargs)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.close()
        for port in self._bus_ports:
            release_port(port)
