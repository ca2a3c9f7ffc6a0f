"""RESP on the wire: command encoding and one pipelined connection parsed by hiredis.

Every argument goes out as a bulk string with an explicit length, so no value (a topic, a
header, a payload) can ever be read by Redis as anything but data. The connection writes whole
pre-encoded batches and matches replies to them in order, the way Redis answers a pipeline.
redis-py's pipeline objects cost ~15 µs a command here; this path costs well under one.

Error replies come back as `hiredis.ReplyError` values in the reply list, never raised: a
pipeline's replies are per command, and one failing entry must not hide the others' results.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis

ReplyError = hiredis.ReplyError


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def encode_command(args: Iterable[bytes]) -> bytes:
    parts = [bulk(arg) for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(parts)


def decode_command(command: bytes) -> list[bytes]:
    """The arguments of one encoded command (dead letters and tests read commands back)."""
    reader = hiredis.Reader()
    reader.feed(command)
    args = reader.gets()
    if not isinstance(args, list) or reader.gets() is not False:
        raise ValueError("not exactly one RESP array")
    return [bytes(arg) for arg in args]


class ConnectionLostError(ConnectionError):
    """The connection ended before every reply of a batch arrived; `replies` holds those that
    did (their commands ran; the rest may or may not have)."""

    def __init__(self, message: str, replies: list[Any]) -> None:
        super().__init__(message)
        self.replies = replies


@dataclass(slots=True)
class _Pending:
    expected: int
    future: asyncio.Future[list[Any]]
    replies: list[Any] = field(default_factory=list)


class _RespProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._pending: deque[_Pending] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed_reason: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport; uvloop's implement asyncio.Transport's methods
        # without subclassing it, so this is a cast, not an isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        try:
            while pending:
                head = pending[0]
                replies, expected, gets = head.replies, head.expected, reader.gets
                while len(replies) < expected:
                    reply = gets()
                    if reply is False:
                        return
                    replies.append(reply)
                pending.popleft()
                if not head.future.done():
                    head.future.set_result(replies)
            if reader.gets() is not False:
                self._abort("a reply arrived that no command asked for")
        except hiredis.ProtocolError as error:
            self._abort(f"RESP protocol error: {error}")

    def _abort(self, reason: str) -> None:
        self.closed_reason = reason
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.closed_reason or (repr(exc) if exc else "connection closed by the server")
        self.closed_reason = reason
        while self._pending:
            pending = self._pending.popleft()
            if not pending.future.done():
                error = ConnectionLostError(reason, pending.replies)
                pending.future.set_exception(error)
                pending.future.exception()  # a caller that gave up must not log "never retrieved"

    def expect(self, count: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed_reason is not None:
            future.set_exception(ConnectionLostError(self.closed_reason, []))
            return future
        if count == 0:
            future.set_result([])
            return future
        self._pending.append(_Pending(count, future))
        return future

    @property
    def in_flight(self) -> int:
        return len(self._pending)


class RespConnection:
    """One TCP (or TLS, or unix socket) connection to Redis with pipelined batches."""

    def __init__(self, transport: asyncio.Transport, protocol: _RespProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def open(
        cls,
        *,
        host: str | None = None,
        port: int | None = None,
        path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> RespConnection:
        """Connect (bound it with asyncio.timeout: the OS may take minutes to give up)."""
        loop = asyncio.get_running_loop()
        if path is not None:
            transport, protocol = await loop.create_unix_connection(_RespProtocol, path)
        else:
            if host is None or port is None:
                raise ValueError("a TCP connection needs a host and a port")
            transport, protocol = await loop.create_connection(
                _RespProtocol,
                host,
                port,
                ssl=ssl_context,
                server_hostname=host if ssl_context else None,
            )
        return cls(transport, protocol)

    def send(self, commands: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write `count` encoded commands; the future gets their `count` replies in order, or
        ConnectionLostError (with the replies that did arrive)."""
        if self._transport.is_closing() and self._protocol.closed_reason is None:
            self._protocol.closed_reason = "connection closing"
        future = self._protocol.expect(count)
        if not future.done():
            self._transport.write(commands)
        return future

    async def call(self, *args: bytes) -> Any:
        """One command; an error reply is raised as ReplyError. Bound it with asyncio.timeout."""
        (reply,) = await self.send(encode_command(args), 1)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    @property
    def closed(self) -> bool:
        return self._protocol.closed_reason is not None or self._transport.is_closing()

    @property
    def closed_reason(self) -> str | None:
        return self._protocol.closed_reason

    @property
    def in_flight(self) -> int:
        return self._protocol.in_flight

    def close(self) -> None:
        """Drop the connection now; batches still waiting fail with ConnectionLostError."""
        if self._protocol.closed_reason is None:
            self._protocol.closed_reason = "closed by the agent"
        self._transport.abort()
