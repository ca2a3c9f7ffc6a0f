"""Where Redis is and how to open a ready connection to it: URL, TLS, AUTH, SELECT, version.

The URL follows redis-py's rules (the same as every redis-py user's REDIS_URL); the
handshake runs over our own pipelined connection, so set-up and the hot path share one code
path. The server's version decides whether XADD can carry IDMP (Redis >= 8.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, replace

from agent.config.tree import RedisConfig, TlsConfig
from agent.core.tls import ssl_context_for
from agent.messages.redis.resp import ReplyError, RespConnection

IDMP_SINCE = (8, 6)
_VERSION = re.compile(rb"^redis_version:(\d+)\.(\d+)(?:\.(\d+))?", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: tuple[int, int, int]

    @property
    def supports_idmp(self) -> bool:
        return self.version[:2] >= IDMP_SINCE

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def parse_server_version(info: bytes) -> tuple[int, int, int]:
    """`redis_version:x.y.z` from INFO server; (0, 0, 0) when absent (assume the oldest)."""
    found = _VERSION.search(info)
    if found is None:
        return (0, 0, 0)
    major, minor, patch = found.groups()
    return (int(major), int(minor), int(patch or 0))


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """What a redis://, rediss:// or unix:// URL says (redis-py's spelling of them)."""

    host: str | None
    port: int | None
    path: str | None
    db: int
    username: str | None
    password: str | None
    tls: bool


def parse_redis_url(url: str) -> RedisUrl:
    """`redis[s]://[[user]:password@]host[:port][/db][?db=n]` or `unix://[..@]/path?db=n`.

    Parsed here rather than with redis-py's parser: importing redis-py costs the agent ~10 MB
    of RSS for this one function (the hot path speaks RESP through hiredis itself)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    db_text = query.get("db", [""])[0]
    if parts.scheme == "unix":
        return RedisUrl(None, None, parts.path, int(db_text or 0), username, password, False)
    if not db_text:
        db_text = parts.path.lstrip("/")
    host = urllib.parse.unquote(parts.hostname) if parts.hostname else "localhost"
    return RedisUrl(
        host=host,
        port=parts.port or 6379,
        path=None,
        db=int(db_text or 0),
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


def default_client_name() -> str:
    return f"sidecar-agent:{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    url: RedisUrl
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    command_timeout: float
    description: str  # for logs and /readyz: never the password
    tls: TlsConfig | None = None  # the settings ssl_context came from (for redis-py clients)

    @classmethod
    def from_config(cls, config: RedisConfig) -> RedisTarget:
        parsed = parse_redis_url(config.url)
        where = f"unix:{parsed.path}" if parsed.path else f"{parsed.host}:{parsed.port}"
        return cls(
            url=parsed,
            ssl_context=ssl_context_for(config.tls) if parsed.tls else None,
            connect_timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
            description=f"{'rediss' if parsed.tls else 'redis'}://{where}/{parsed.db}",
            tls=config.tls if parsed.tls else None,
        )

    def at(self, host: str, port: int) -> RedisTarget:
        """The same credentials, TLS and timeouts for another server (a cluster node, the
        master a sentinel names). A cluster has only database 0."""
        scheme = "rediss" if self.url.tls else "redis"
        return replace(
            self,
            url=replace(self.url, host=host, port=port, path=None),
            description=f"{scheme}://{host}:{port}/{self.url.db}",
        )

    async def connect(self, client_name: str | None = None) -> tuple[RespConnection, ServerInfo]:
        """Open, authenticate, select the database and read the version. Raises OSError,
        TimeoutError or ReplyError (e.g. WRONGPASS) on failure; nothing is left open."""
        async with asyncio.timeout(self.connect_timeout):
            url = self.url
            connection = await RespConnection.open(
                host=url.host, port=url.port, path=url.path, ssl_context=self.ssl_context
            )
            try:
                info = await self._handshake(connection, client_name or default_client_name())
            except BaseException:
                connection.close()
                raise
        return connection, info

    async def _handshake(self, connection: RespConnection, client_name: str) -> ServerInfo:
        url = self.url
        if url.password is not None:
            credentials = [url.password.encode()]
            if url.username:
                credentials.insert(0, url.username.encode())
            await connection.call(b"AUTH", *credentials)
        if url.db:
            await connection.call(b"SELECT", str(url.db).encode())
        # A name only helps CLIENT LIST readers; ACLs may forbid it.
        with contextlib.suppress(ReplyError):
            await connection.call(b"CLIENT", b"SETNAME", client_name.encode())
        info = await connection.call(b"INFO", b"server")
        return ServerInfo(parse_server_version(bytes(info)))
