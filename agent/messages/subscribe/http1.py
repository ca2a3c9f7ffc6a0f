"""A small HTTP/1.1 client for deliveries to an app on plain http:// (the sidecar case: the app
is on localhost): kept-alive connections, one request at a time on each, Content-Length or
chunked answers.

Why not aiohttp's client: per request it costs several times what the rest of a delivery costs
(a Python client tops out well below what daprd delivers; docs/benchmarks.md). Here a request
is one write of one prebuilt buffer, and the answer is parsed in the protocol's data callback:
one future per request, no stream reader. https:// endpoints use aiohttp (transport.py).
"""

from __future__ import annotations

import asyncio
import urllib.parse

from agent.messages.subscribe.protocols import Reply, Request

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # an app's answer is a status: more is refused, not buffered


class HttpProtocolError(Exception):
    """The app's answer is not HTTP/1.1 we can read."""


class ConnectError(OSError):
    """No connection to the app (refused, unreachable): nothing was sent."""


class StaleConnectionError(Exception):
    """A kept-alive connection was closed by the app before it answered anything."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.buffer = bytearray()
        self.keep_alive = True
        self.reused = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            reply = _parse(self.buffer, self)
        except HttpProtocolError as error:
            waiter.set_exception(error)
            self.close()
            return
        if reply is not None:
            self.buffer.clear()
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.reused and not self.buffer:
                waiter.set_exception(StaleConnectionError())
            elif not self.keep_alive and self.buffer:
                try:  # no length, no chunks: the body ends with the connection
                    waiter.set_result(_until_close(self.buffer))
                except HttpProtocolError as error:
                    waiter.set_exception(error)
            else:
                waiter.set_exception(ConnectionResetError("the app closed the connection"))

    async def exchange(self, payload: bytes) -> Reply:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        try:
            return await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse(buffer: bytearray, connection: _Connection) -> Reply | None:
    """The whole answer once it is in `buffer`, else None (wait for more)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise HttpProtocolError("the answer's head is too large")
        return None
    status, length, chunked, keep = _parse_head(bytes(buffer[:end]))
    connection.keep_alive = keep
    start = end + 4
    if chunked:
        body = _chunked(buffer, start)
        return None if body is None else Reply(status, body)
    if length is None:
        if keep or status in (204, 304) or 100 <= status < 200:
            return Reply(status, b"")
        return None  # the body runs to the end of the connection
    if length > MAX_BODY_BYTES:
        raise HttpProtocolError(f"an answer of {length} bytes")
    if len(buffer) - start < length:
        return None
    return Reply(status, bytes(buffer[start : start + length]))


def _until_close(buffer: bytearray) -> Reply:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        raise HttpProtocolError("the connection closed inside the answer's head")
    status = _parse_head(bytes(buffer[:end]))[0]
    return Reply(status, bytes(buffer[end + 4 : end + 4 + MAX_BODY_BYTES]))


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length, chunked, keep alive) of a response head."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length: int | None = None
    chunked = False
    keep = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise HttpProtocolError("a bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            keep = token == b"keep-alive" or (keep and token != b"close")
    return int(code), length, chunked, keep


def _chunked(buffer: bytearray, position: int) -> bytes | None:
    """The body of a complete chunked answer from `position`, None while incomplete."""
    parts: list[bytes] = []
    size = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            chunk = int(bytes(buffer[position:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            raise HttpProtocolError("a bad chunk size") from None
        position = line_end + 2
        if chunk == 0:
            trailers_end = buffer.find(b"\r\n", position)
            while trailers_end > position:  # skip trailer lines up to the empty one
                position = trailers_end + 2
                trailers_end = buffer.find(b"\r\n", position)
            return None if trailers_end < 0 else b"".join(parts)
        size += chunk
        if size > MAX_BODY_BYTES:
            raise HttpProtocolError("a chunked answer over 1 MiB")
        if len(buffer) < position + chunk + 2:
            return None
        parts.append(bytes(buffer[position : position + chunk]))
        position += chunk + 2


class Http1Client:
    def __init__(self, endpoint: str, max_idle: int) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{endpoint!r}: the HTTP/1.1 client takes http:// URLs only")
        self.host = parts.hostname
        self.port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        authority = parts.netloc.rpartition("@")[2]
        self._head = f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
        self._idle: list[_Connection] = []
        self._max_idle = max_idle

    async def post(self, request: Request) -> Reply:
        """Raises OSError (and subclasses) when no answer came; ConnectError when nothing
        was sent."""
        payload = self._encode(request)
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            try:
                return await self._exchange(connection, payload)
            except StaleConnectionError:
                continue  # the app closed it while idle: nothing was received, send again
        connection = await self._connect()
        try:
            return await self._exchange(connection, payload)
        except StaleConnectionError:
            raise ConnectionResetError("the app closed the connection without answering") from None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        except OSError as error:
            raise ConnectError(f"{type(error).__name__}: {error}") from None
        return connection

    def _encode(self, request: Request) -> bytes:
        headers = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        length = f"Content-Length: {len(request.body)}\r\n\r\n"
        return self._head + (headers + length).encode("latin-1") + request.body

    async def _exchange(self, connection: _Connection, payload: bytes) -> Reply:
        try:
            reply = await connection.exchange(payload)
        except BaseException:
            connection.close()
            raise
        if connection.keep_alive and not connection.closed and len(self._idle) < self._max_idle:
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
