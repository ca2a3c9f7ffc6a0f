"""A small HTTP/1.1 client for deliveries to an app on plain http:// (the sidecar case: the app
is on localhost): kept-alive connections, one request at a time on each, Content-Length or
chunked answers.

Why not aiohttp's client: per request it costs several times what the whole delivery costs
otherwise (a Python client tops out well below what daprd delivers; docs/benchmarks.md). This
one writes one prebuilt buffer per request and parses only the status line and the two headers
it needs. https:// endpoints use aiohttp (transport.py).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass, field

from agent.messages.subscribe.protocols import Reply, Request

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # an app's answer is a status: more is refused, not buffered


class HttpProtocolError(Exception):
    """The app's answer is not HTTP/1.1 we can read."""


class ConnectError(OSError):
    """No connection to the app (refused, unreachable): nothing was sent."""


class StaleConnectionError(Exception):
    """A kept-alive connection was closed by the app before it answered anything."""


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = field(default=False)

    def close(self) -> None:
        self.writer.close()


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
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_HEAD_BYTES
            )
        except OSError as error:
            raise ConnectError(f"{type(error).__name__}: {error}") from None
        return _Connection(reader, writer)

    def _encode(self, request: Request) -> bytes:
        headers = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        length = f"Content-Length: {len(request.body)}\r\n\r\n"
        return self._head + (headers + length).encode("latin-1") + request.body

    async def _exchange(self, connection: _Connection, payload: bytes) -> Reply:
        try:
            connection.writer.write(payload)
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            connection.close()
            if connection.reused and not error.partial:
                raise StaleConnectionError from None
            raise ConnectionResetError("the app closed the connection mid-answer") from None
        except (asyncio.LimitOverrunError, ValueError):
            connection.close()
            raise HttpProtocolError("the answer's head is too large") from None
        except BaseException:
            connection.close()
            raise
        try:
            status, length, chunked, keep = _parse_head(head)
            body = await self._body(connection.reader, length, chunked, keep)
        except BaseException:
            connection.close()
            raise
        if keep and len(self._idle) < self._max_idle:
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()
        return Reply(status, body)

    @staticmethod
    async def _body(
        reader: asyncio.StreamReader, length: int | None, chunked: bool, keep: bool
    ) -> bytes:
        try:
            if chunked:
                return await _read_chunked(reader)
            if length is not None:
                if length > MAX_BODY_BYTES:
                    raise HttpProtocolError(f"an answer of {length} bytes")
                return await reader.readexactly(length) if length else b""
            if keep:
                return b""  # no length, no chunks, kept alive: HTTP says there is no body
            return await reader.read(MAX_BODY_BYTES)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the app closed the connection mid-answer") from None

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


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
            keep = value.strip().lower() == b"keep-alive" or (
                keep and value.strip().lower() != b"close"
            )
    return int(code), length, chunked, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            chunk = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise HttpProtocolError("a bad chunk size") from None
        if chunk == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        size += chunk
        if size > MAX_BODY_BYTES:
            raise HttpProtocolError("a chunked answer over 1 MiB")
        parts.append(await reader.readexactly(chunk))
        await reader.readexactly(2)
