"""Fixtures for scale-out tests: a replicated Redis Cluster and a Sentinel group, per test
(the tests kill masters and move slots, so none is shared)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.redis_cluster import ReplicatedRedisCluster
from tests.harness.redis_sentinel import SentinelGroup

PASSWORD = "scale-out-secret"


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[ReplicatedRedisCluster]:
    """3 masters, 1 replica each, AUTH required, cluster_state ok and replicas in sync."""
    cluster = ReplicatedRedisCluster(tmp_path / "cluster", password=PASSWORD)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """1 master, 1 replica, 3 sentinels (quorum 2), AUTH required on the data nodes."""
    group = SentinelGroup(tmp_path / "sentinel", password=PASSWORD)
    try:
        group.start()
        yield group
    finally:
        group.close()
