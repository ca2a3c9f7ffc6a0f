"""A replicated Redis Cluster (masters with replicas) and its faults: a master killed and
replaced by its replica, a slot migrated to another master while clients write to it.

Built from RedisServer processes on loopback. Joining does what `redis-cli --cluster create
--cluster-replicas 1` does (slots split evenly, one config epoch per master, MEET, REPLICATE)
without its one-second polling sleeps; a slot migration does what `redis-cli --cluster
reshard` does for one slot (SETSLOT IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually_sync
from tests.harness.ports import free_port, release_port
from tests.harness.redis_server import CLUSTER_SLOTS, RedisServer

NODE_TIMEOUT_MS = 1000  # failure detection: a killed master is replaced within a few seconds


class ReplicatedRedisCluster:
    """`masters` masters with `replicas` replicas each; node i < masters starts as a master."""

    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        tls: Path | None = None,
    ) -> None:
        """`tls`: a directory with ca.crt and server.crt/key (tests/harness/pki.py). Each node
        then also listens with TLS on `tls_ports[i]` and the cluster bus runs on TLS; a TLS
        client is told TLS ports in CLUSTER SLOTS and redirects, a plain one plain ports
        (the plain ports stay, for the harness's own checks)."""
        self.workdir = workdir
        self.masters_wanted = masters
        self.replicas_wanted = replicas
        self.password = password
        count = masters * (1 + replicas)
        self._bus_ports = [free_port() for _ in range(count)]
        self.tls_ports = [free_port() for _ in range(count)] if tls else []
        self.nodes = [
            RedisServer(
                workdir / f"node-{index}",
                extra_args=[
                    *self._node_args(bus_port, extra_args),
                    *(_tls_args(tls, self.tls_ports[index]) if tls else []),
                ],
                password=password,
            )
            for index, bus_port in enumerate(self._bus_ports)
        ]
        self._ids: dict[int, str] = {}
        self._clients: list[redis.cluster.RedisCluster] = []

    def _node_args(self, bus_port: int, extra_args: Sequence[str]) -> list[str]:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(bus_port),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # A replica takes over however long it was cut off: a test kills masters on purpose.
            "--cluster-replica-validity-factor", "0",
        ]  # fmt: skip
        if self.password:
            args += ["--masterauth", self.password]
        return [*args, *extra_args]

    @property
    def seeds(self) -> list[str]:
        return [f"{node.host}:{node.port}" for node in self.nodes]

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start()
        self._ids = {node.port: self._call(node, "CLUSTER", "MYID") for node in self.nodes}
        self._join()
        eventually_sync(self.is_ok, timeout=timeout, what="a replicated cluster with state ok")

    def _call(self, node: RedisServer, *args: Any) -> Any:
        with node.client(track=False, socket_timeout=5) as client:
            reply = client.execute_command(*args)
        return reply.decode() if isinstance(reply, bytes) else reply

    def node_id(self, node: RedisServer) -> str:
        return self._ids[node.port]

    def _join(self) -> None:
        masters = self.nodes[: self.masters_wanted]
        bounds = [CLUSTER_SLOTS * i // len(masters) for i in range(len(masters) + 1)]
        for index, node in enumerate(masters):
            self._call(node, "CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1)
            self._call(node, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        first = self.nodes[0]
        for node, bus_port in zip(self.nodes[1:], self._bus_ports[1:], strict=True):
            self._call(first, "CLUSTER", "MEET", node.host, node.port, bus_port)
        eventually_sync(self._all_known, timeout=30, what="every node knowing every other")
        replicas = self.nodes[self.masters_wanted :]
        for index, node in enumerate(replicas):
            master = masters[index % len(masters)]
            self._call(node, "CLUSTER", "REPLICATE", self.node_id(master))

    def _all_known(self) -> bool:
        for node in self.nodes:
            known = self._call(node, "CLUSTER", "NODES").strip().splitlines()
            if len(known) != len(self.nodes) or any("handshake" in line for line in known):
                return False
        return True

    def is_ok(self) -> bool:
        """Every running node says cluster_state:ok, every master has its replicas in sync."""
        try:
            for node in self.running_nodes():
                if self.cluster_state(node) != "ok":
                    return False
            for master in self.masters():
                with master.client(track=False) as client:
                    replication = client.info("replication")
                if int(replication.get("connected_slaves", 0)) < self.replicas_wanted:
                    return False
        except redis.RedisError:
            return False
        return True

    def cluster_state(self, node: RedisServer) -> str:
        info = self._call(node, "CLUSTER", "INFO")
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name == "cluster_state":
                return value.strip()
        return ""

    def running_nodes(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def masters(self) -> list[RedisServer]:
        """Running nodes that serve slots now."""
        found = []
        for node in self.running_nodes():
            role = self._call(node, "ROLE")
            if role[0] in (b"master", "master"):
                found.append(node)
        return found

    def master_of_key(self, key: str) -> RedisServer:
        slot = self._call(self.running_nodes()[0], "CLUSTER", "KEYSLOT", key)
        return self.master_of_slot(int(slot))

    def master_of_slot(self, slot: int) -> RedisServer:
        for node in self.running_nodes():
            for entry in self._call(node, "CLUSTER", "SLOTS"):
                start, end, master = entry[0], entry[1], entry[2]
                if start <= slot <= end:
                    port = int(master[1])
                    return next(n for n in self.nodes if n.port == port)
        raise HarnessError(f"no node serves slot {slot}")

    def wait_for_failover(self, killed: RedisServer, timeout: float = 30.0) -> RedisServer:
        """After `killed` (a master) died: wait until every running node says a replica serves
        its slots and the cluster is ok; returns the new master."""
        slot = self._a_slot_of(killed)

        def replaced() -> bool:
            try:
                for node in self.running_nodes():
                    if self.cluster_state(node) != "ok":
                        return False
                    if self._owner_port(node, slot) in (None, killed.port):
                        return False
            except redis.RedisError:
                return False
            return True

        eventually_sync(replaced, timeout=timeout, what=f"a replica replacing {killed.port}")
        return self.master_of_slot(slot)

    def _a_slot_of(self, master: RedisServer) -> int:
        for node in self.running_nodes():
            for start, _, owner, *_ in self._call(node, "CLUSTER", "SLOTS"):
                if int(owner[1]) == master.port:
                    return int(start)
        raise HarnessError(f"{master.port} serves no slots")

    def _owner_port(self, node: RedisServer, slot: int) -> int | None:
        for start, end, owner, *_ in self._call(node, "CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(owner[1])
        return None

    def migrate_slot(self, slot: int, target: RedisServer, keys_per_step: int = 50) -> int:
        """Move `slot` to `target` the way `redis-cli --cluster reshard` does; returns how
        many keys moved. Clients see ASK while keys move and MOVED afterwards."""
        source = self.master_of_slot(slot)
        if source.port == target.port:
            raise HarnessError(f"slot {slot} is on {target.port} already")
        self._call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        self._call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        moved = 0
        while True:
            keys = self._call(source, "CLUSTER", "GETKEYSINSLOT", slot, keys_per_step)
            if not keys:
                break
            auth = ["AUTH", self.password] if self.password else []
            self._call(
                source, "MIGRATE", target.host, target.port, "", 0, 5000, *auth, "KEYS", *keys
            )
            moved += len(keys)
        for node in (target, source, *self.masters()):
            self._call(node, "CLUSTER", "SETSLOT", slot, "NODE", self.node_id(target))
        return moved

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A cluster client (closed by close()) that follows MOVED/ASK redirections."""
        first = self.running_nodes()[0]
        client = redis.cluster.RedisCluster(
            host=first.host, port=first.port, password=self.password, **kwargs
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        for node in self.nodes:
            node.close()
        for port in [*self._bus_ports, *self.tls_ports]:
            release_port(port)


def _tls_args(directory: Path, port: int) -> list[str]:
    return [
        "--tls-port", str(port),
        "--tls-cert-file", str(directory / "server.crt"),
        "--tls-key-file", str(directory / "server.key"),
        "--tls-ca-cert-file", str(directory / "ca.crt"),
        "--tls-cluster", "yes",
        "--tls-replication", "yes",
        "--tls-auth-clients", "optional",  # nodes show their certificate; clients may not
    ]  # fmt: skip


def _line(nodes: str, node_id: str) -> str:
    return next((line for line in nodes.splitlines() if line.startswith(node_id)), "")
