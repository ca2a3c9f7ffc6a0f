"""The control plane of cluster and sentinel modes on redis-py: the slot map (CLUSTER SLOTS) and
the master a service name stands for (the sentinels' SENTINEL MASTERS, with redis-py's check
that the master is neither subjectively nor objectively down).

Only these rare questions go through redis-py; the XADD hot path stays on the agent's own
pipelined RESP connections (resp.py). redis-py is imported only in those modes (it costs the
process ~10 MB of RSS), and every redis-py error leaves here as an OSError, which the sender
already backs off and retries on.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from agent.config.tree import TlsConfig
from agent.messages.redis.connection import RedisTarget


class ControlError(OSError):
    """A control-plane question redis-py could not get answered."""


def _address(target: RedisTarget) -> tuple[str, int]:
    return target.url.host or "localhost", target.url.port or 6379


def tls_options(tls: TlsConfig) -> dict[str, Any]:
    """redis-py's spelling of a `tls` section (what `ssl_context_for` builds for our own
    connections): CA file or the system's, client certificate, verification on or off."""
    return {
        "ssl_ca_certs": tls.ca_file or None,
        "ssl_certfile": tls.cert_file or None,
        "ssl_keyfile": tls.key_file or None,
        "ssl_cert_reqs": "none" if tls.insecure_skip_verify else "required",
        "ssl_check_hostname": not tls.insecure_skip_verify,
    }


def client_options(target: RedisTarget) -> dict[str, Any]:
    """redis-py keyword arguments for `target`: its credentials, TLS and timeouts."""
    url = target.url
    options: dict[str, Any] = {
        "username": url.username,
        "password": url.password,
        "socket_connect_timeout": target.connect_timeout,
        "socket_timeout": target.command_timeout,
    }
    if url.tls and target.tls is not None:
        options.update(ssl=True, **tls_options(target.tls))
    return options


async def cluster_slots(target: RedisTarget) -> Any:
    """The raw CLUSTER SLOTS reply of one node (a plain redis-py client leaves it unparsed)."""
    host, port = _address(target)
    client = aioredis.Redis(host=host, port=port, **client_options(target))
    try:
        return await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    except RedisError as error:
        raise ControlError(f"{type(error).__name__}: {error}") from None
    finally:
        await client.aclose()


async def sentinel_master(sentinels: list[RedisTarget], service: str) -> tuple[str, int]:
    """(host, port) of the master the first sentinel that knows `service` sees up."""
    addresses = [_address(target) for target in sentinels]
    manager = Sentinel(addresses, sentinel_kwargs=client_options(sentinels[0]))
    try:
        host, port = await manager.discover_master(service)
    except RedisError as error:
        raise ControlError(f"{type(error).__name__}: {error}") from None
    finally:
        for sentinel in manager.sentinels:
            await sentinel.aclose()
    return str(host), int(port)
