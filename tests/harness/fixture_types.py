"""Types of the factory fixtures in tests/conftest.py, for annotating test parameters."""

from collections.abc import Callable

from tests.harness.jaeger import Jaeger
from tests.harness.redis_server import RedisClusterNodes, RedisServer

# factory(*extra_args, password=None)
RedisServerFactory = Callable[..., RedisServer]
# factory(masters=3, extra_args=())
RedisClusterFactory = Callable[..., RedisClusterNodes]
# factory()
JaegerFactory = Callable[[], Jaeger]
