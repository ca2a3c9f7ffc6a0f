"""Real servers for integration tests: redis-server, Redis Cluster (replicated too), Sentinel
and Jaeger v2.

Fixtures in tests/conftest.py are thin wrappers around these classes; use the classes
directly when a test needs something the fixtures do not offer.
"""

from tests.harness.errors import HarnessError
from tests.harness.eventually import eventually, eventually_sync
from tests.harness.jaeger import Jaeger, find_jaeger_binary, jaeger_cache_path
from tests.harness.jaeger_query import JaegerQuery, SpanLog, StoredSpan, StoredTrace
from tests.harness.ports import claimed_ports, free_port, release_port
from tests.harness.process import ManagedProcess
from tests.harness.redis_cluster import ReplicatedRedisCluster
from tests.harness.redis_sentinel import SentinelGroup, SentinelServer
from tests.harness.redis_server import RedisClusterNodes, RedisServer, find_redis_binary

__all__ = [
    "HarnessError",
    "Jaeger",
    "JaegerQuery",
    "ManagedProcess",
    "RedisClusterNodes",
    "RedisServer",
    "ReplicatedRedisCluster",
    "SentinelGroup",
    "SentinelServer",
    "SpanLog",
    "StoredSpan",
    "StoredTrace",
    "claimed_ports",
    "eventually",
    "eventually_sync",
    "find_jaeger_binary",
    "find_redis_binary",
    "free_port",
    "jaeger_cache_path",
    "release_port",
]
