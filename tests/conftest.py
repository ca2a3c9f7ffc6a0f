"""Shared fixtures: real redis-server, Redis Cluster and Jaeger processes (see tests/harness).

A missing binary makes the test error with a message saying how to get it; nothing skips.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.harness import Jaeger, RedisClusterNodes, RedisServer
from tests.harness.fixture_types import JaegerFactory, RedisClusterFactory, RedisServerFactory


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """`factory(*extra_args, password=None)` starts another RedisServer; all stop at teardown."""
    servers: list[RedisServer] = []

    def start(*extra_args: str, password: str | None = None) -> RedisServer:
        server = RedisServer(
            tmp_path / f"redis-{len(servers)}", extra_args=extra_args, password=password
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(redis_server_factory: RedisServerFactory) -> RedisServer:
    """A started redis-server without persistence on a free port, just for this test."""
    return redis_server_factory()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterFactory]:
    """`factory(masters=3, extra_args=())` starts a joined Redis Cluster (cluster_state:ok)."""
    clusters: list[RedisClusterNodes] = []

    def start(masters: int = 3, extra_args: Sequence[str] = ()) -> RedisClusterNodes:
        cluster = RedisClusterNodes(
            tmp_path / f"cluster-{len(clusters)}", masters=masters, extra_args=extra_args
        )
        clusters.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in clusters:
        cluster.close()


@pytest.fixture(scope="session")
def _shared_jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with Jaeger(tmp_path_factory.mktemp("jaeger")) as jaeger:
        yield jaeger


@pytest.fixture
def jaeger(_shared_jaeger: Jaeger) -> Jaeger:
    """One Jaeger for the whole session (it takes seconds to start): tell tests apart by
    service name (see `service_name`). Stopping it is for `jaeger_factory` instances; if a
    test stopped this one anyway, the next test gets it restarted (and empty)."""
    if not _shared_jaeger.running:
        _shared_jaeger.start()
    return _shared_jaeger


@pytest.fixture
def jaeger_factory(tmp_path: Path) -> Iterator[JaegerFactory]:
    """`factory()` starts a Jaeger owned by this test, free to stop, kill and restart."""
    instances: list[Jaeger] = []

    def start() -> Jaeger:
        instance = Jaeger(tmp_path / f"jaeger-{len(instances)}")
        instances.append(instance)
        instance.start()
        return instance

    yield start
    for instance in instances:
        instance.close()


@pytest.fixture
def service_name(request: pytest.FixtureRequest) -> str:
    """A service name no other test (or earlier run against the same Jaeger) uses."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"test-{readable}-{uuid.uuid4().hex[:8]}"
