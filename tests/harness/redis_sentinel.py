"""Redis with Sentinel on loopback: one master, its replicas and a quorum of sentinels.

Sentinels are Debian's `redis-sentinel` (the redis-server binary in sentinel mode), each with
its own config file, which it rewrites as it learns the topology.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually_sync
from tests.harness.redis_server import RedisServer

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
_INSTALL_HINT = (
    "Install it with `apt-get install -y redis-sentinel` (scripts/test does this) "
    "or set REDIS_SENTINEL_BIN."
)


def find_sentinel_binary() -> Path:
    override = os.environ.get("REDIS_SENTINEL_BIN")
    found = override or shutil.which("redis-sentinel")
    if found is None:
        raise HarnessError(f"redis-sentinel not found on PATH. {_INSTALL_HINT}")
    return Path(found)


class SentinelServer(RedisServer):
    """One redis-sentinel watching `master` under MASTER_NAME."""

    name = "redis-sentinel"

    def __init__(self, workdir: Path, master: RedisServer, quorum: int) -> None:
        super().__init__(workdir)
        self.master = master
        self.quorum = quorum
        self._sentinel_binary = find_sentinel_binary()

    def _argv(self) -> list[str]:
        config = self.workdir / "sentinel.conf"
        if not config.exists():  # a restart keeps what the sentinel learned
            lines = [
                f"port {self.port}",
                f"bind {self.host}",
                f"dir {self.workdir}",
                f"sentinel monitor {MASTER_NAME} {self.master.host} {self.master.port} "
                f"{self.quorum}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} 5000",
            ]
            if self.master.password:
                lines.append(f"sentinel auth-pass {MASTER_NAME} {self.master.password}")
            config.write_text("\n".join(lines) + "\n")
        return [str(self._sentinel_binary), str(config)]

    def master_address(self) -> tuple[str, int] | None:
        with self.client(track=False, socket_timeout=2) as client:
            reply = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else host, int(port))


class SentinelGroup:
    """A master, `replicas` replicas and `sentinels` sentinels (quorum: a majority)."""

    def __init__(
        self, workdir: Path, *, replicas: int = 1, sentinels: int = 3, password: str | None = None
    ) -> None:
        self.master = RedisServer(
            workdir / "master", password=password, extra_args=self._auth(password)
        )
        self.replicas = [
            RedisServer(workdir / f"replica-{index}", password=password)
            for index in range(replicas)
        ]
        quorum = sentinels // 2 + 1
        self.sentinels = [
            SentinelServer(workdir / f"sentinel-{index}", self.master, quorum)
            for index in range(sentinels)
        ]
        self.password = password

    @staticmethod
    def _auth(password: str | None) -> list[str]:
        return ["--masterauth", password] if password else []

    @property
    def redis_servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"{sentinel.host}:{sentinel.port}" for sentinel in self.sentinels]

    def start(self, timeout: float = 30.0) -> None:
        self.master.start()
        for replica in self.replicas:
            replica.extra_args = (
                "--replicaof", self.master.host, str(self.master.port),
                *self._auth(self.password),
            )  # fmt: skip
            replica.start()
        eventually_sync(self._replicas_in_sync, timeout=timeout, what="replicas in sync")
        for sentinel in self.sentinels:
            sentinel.start()
        eventually_sync(self._sentinels_agree, timeout=timeout, what="sentinels seeing each other")

    def _replicas_in_sync(self) -> bool:
        with self.master.client(track=False) as client:
            info = client.info("replication")
        return int(info.get("connected_slaves", 0)) >= len(self.replicas)

    def _sentinels_agree(self) -> bool:
        try:
            for sentinel in self.sentinels:
                with sentinel.client(track=False, socket_timeout=2) as client:
                    state = client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
                # redis-py parses SENTINEL MASTER into a dict (of bytes, without decoding)
                fields = {_text(key): _text(value) for key, value in state.items()}
                others = int(fields.get("num-other-sentinels", 0))
                slaves = int(fields.get("num-slaves", 0))
                if others < len(self.sentinels) - 1 or slaves < len(self.replicas):
                    return False
        except redis.RedisError:
            return False
        return True

    def current_master(self) -> RedisServer:
        address = self.sentinels[0].master_address()
        for server in self.redis_servers:
            if address == (server.host, server.port):
                return server
        raise HarnessError(f"the sentinels name {address}, not one of our servers")

    def wait_for_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Until every running sentinel names another server, which says it is a master."""

        def promoted() -> bool:
            try:
                for sentinel in self.sentinels:
                    if not sentinel.running:
                        continue
                    address = sentinel.master_address()
                    if address is None or address == (old.host, old.port):
                        return False
                new = self.current_master()
                with new.client(track=False) as client:
                    return bool(client.execute_command("ROLE")[0] in (b"master", "master"))
            except (redis.RedisError, HarnessError):
                return False

        eventually_sync(promoted, timeout=timeout, what="the sentinels promoting a replica")
        return self.current_master()

    def close(self) -> None:
        for server in [*self.sentinels, *self.replicas, self.master]:
            server.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
