"""Where Redis is and how to open a ready connection to it: URL, TLS, AUTH, SELECT, version.

The URL is parsed by redis-py (the same rules as every redis-py user's REDIS_URL); the
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
from dataclasses import dataclass
from typing import Any

from redis.connection import parse_url

from agent.config import RedisConfig, TlsConfig
from agent.messages.resp import ReplyError, RespConnection

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


def ssl_context_for(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file or None)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def default_client_name() -> str:
    return f"sidecar-agent:{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    host: str | None
    port: int | None
    path: str | None
    db: int
    username: str | None
    password: str | None
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    command_timeout: float
    description: str  # for logs and /readyz: never the password

    @classmethod
    def from_config(cls, config: RedisConfig) -> RedisTarget:
        options: dict[str, Any] = parse_url(config.url)  # type: ignore[no-untyped-call]
        uses_tls = config.url.startswith("rediss://")
        path = options.get("path")
        host, port = options.get("host"), options.get("port", 6379)
        where = f"unix:{path}" if path else f"{host}:{port}"
        return cls(
            host=None if path else host,
            port=None if path else int(port),
            path=path,
            db=int(options.get("db") or 0),
            username=options.get("username"),
            password=options.get("password"),
            ssl_context=ssl_context_for(config.tls) if uses_tls else None,
            connect_timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
            description=f"{'rediss' if uses_tls else 'redis'}://{where}/{options.get('db') or 0}",
        )

    async def connect(self, client_name: str | None = None) -> tuple[RespConnection, ServerInfo]:
        """Open, authenticate, select the database and read the version. Raises OSError,
        TimeoutError or ReplyError (e.g. WRONGPASS) on failure; nothing is left open."""
        async with asyncio.timeout(self.connect_timeout):
            connection = await RespConnection.open(
                host=self.host, port=self.port, path=self.path, ssl_context=self.ssl_context
            )
            try:
                info = await self._handshake(connection, client_name or default_client_name())
            except BaseException:
                connection.close()
                raise
        return connection, info

    async def _handshake(self, connection: RespConnection, client_name: str) -> ServerInfo:
        if self.password is not None:
            credentials = [self.password.encode()]
            if self.username:
                credentials.insert(0, self.username.encode())
            await connection.call(b"AUTH", *credentials)
        if self.db:
            await connection.call(b"SELECT", str(self.db).encode())
        with contextlib.suppress(
            ReplyError
        ):  # a name only helps CLIENT LIST readers; ACLs may forbid it
            await connection.call(b"CLIENT", b"SETNAME", client_name.encode())
        info = await connection.call(b"INFO", b"server")
        return ServerInfo(parse_server_version(bytes(info)))
