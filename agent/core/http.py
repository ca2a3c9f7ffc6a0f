"""Small shared pieces for the agent's aiohttp servers: listen addresses, JSON errors, and a
runner that bounds connections.

Each server has a connection cap and an idle timeout (docs/http-api.md). Past the cap a new
connection gets a canned 503 with Retry-After and is closed at once, so a flood of idle sockets
costs one descriptor each only for the moment of the accept and never starves the disk queue of
descriptors. The idle timeout closes a connection that has not sent a complete request head
within that time of connecting or of its last response: idle keep-alive connections and
clients trickling headers alike (the body then has its own read timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiohttp import web

from agent.core.metrics import Metrics

log = logging.getLogger("agent.core.http")

LISTEN_BACKLOG = 128
# After a failed accept (out of descriptors): the pause before the next, so a full descriptor
# table does not turn the accept loop into a busy loop.
ACCEPT_RETRY_DELAY = 0.1


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) → (host, port)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The one error shape of every HTTP API: {"error": {"code", "message"}}."""
    return json_response({"error": {"code": code, "message": message}}, status, headers)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int
    """Open connections served at once; more are answered 503 and closed."""
    idle_timeout: float
    """Seconds a connection may go without a complete request head."""


def _refusal(max_connections: int) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "code": "too_many_connections",
                "message": f"the server holds its limit of {max_connections} connections",
            }
        }
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Lane(Protocol):
    """A faster road for some requests in front of aiohttp: it takes each new connection and
    gives it to aiohttp (`fallback`, the server's protocol factory) at a request boundary when
    a request is not its own."""

    def connection(self, fallback: Callable[[], asyncio.Protocol]) -> asyncio.Protocol: ...

    async def shutdown(self, grace: float) -> None:
        """Closes idle connections; lets requests in flight finish within `grace` seconds."""


class _Counted(asyncio.Protocol):
    """Forwards to aiohttp's protocol and tells the gate when the connection is gone.

    Counting here rather than in aiohttp's own list of connections matters: a burst of accepts
    creates many protocols before any of them reaches `connection_made`."""

    def __init__(self, inner: asyncio.Protocol, gate: _ConnectionGate) -> None:
        self._inner = inner
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.closed()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _ConnectionGate:
    """Accepts connections for one server while it holds fewer than its cap.

    Its own accept loop (rather than asyncio's) lets a refusal cost nothing: past the cap the
    raw socket gets the canned 503 and is closed before any transport exists, one at a time,
    so a flood never holds more descriptors than the cap plus one."""

    def __init__(
        self,
        server: web.Server,
        limits: ConnectionLimits,
        metrics: Metrics,
        name: str,
        lane: Lane | None = None,
    ) -> None:
        self._server = server
        self._lane = lane
        self._name = name
        self._limit = limits.max_connections
        self._answer = _refusal(limits.max_connections)
        self.open = 0
        self._refused = metrics.counter(
            "http_connections_refused_total",
            "Connections answered 503 and closed because the server held its connection cap.",
            ("server",),
        ).labels(name)
        self._accept_errors = metrics.counter(
            "http_accept_errors_total",
            "Failed accepts (out of descriptors and the like); accepting resumes shortly.",
            ("server",),
        ).labels(name)
        self._open_gauge = metrics.gauge(
            "http_connections_open", "Connections open on the agent's HTTP servers.", ("server",)
        ).labels(name)

    async def serve(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _address = await loop.sock_accept(listener)
            except OSError as error:
                self._accept_errors.inc()
                log.warning(
                    "cannot accept a connection",
                    extra={"server": self._name, "error": repr(error)},
                )
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            if self.open >= self._limit:
                self._refuse(connection)
                continue
            self.open += 1
            self._open_gauge.inc()
            try:
                await loop.connect_accepted_socket(self._protocol, connection)
            except OSError:
                self.closed()
                connection.close()

    def _protocol(self) -> asyncio.Protocol:
        lane = self._lane
        inner = self._server() if lane is None else lane.connection(self._server)
        return _Counted(inner, self)

    def _refuse(self, connection: socket.socket) -> None:
        self._refused.inc()
        with contextlib.suppress(OSError):
            connection.setblocking(False)
            connection.send(self._answer)  # a few hundred bytes: fits any socket buffer
        connection.close()

    def closed(self) -> None:
        self.open -= 1
        self._open_gauge.dec()


def _listeners(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to, as asyncio's create_server
    binds them (IPv6 sockets only for IPv6 when both families are bound)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    families = {info[0] for info in infos}
    listeners: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and len(families) > 1:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
            if port == 0:  # every family on the port the first one got
                port = sock.getsockname()[1]
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


class ServerRunner:
    """Runs one aiohttp Application on host:port with the lifecycle contract."""

    def __init__(
        self,
        app: web.Application,
        listen: str,
        *,
        name: str,
        limits: ConnectionLimits,
        metrics: Metrics,
        shutdown_timeout: float = 5.0,
        auto_decompress: bool = True,
        lane: Lane | None = None,
    ) -> None:
        self.app = app
        self._lane = lane
        self._auto_decompress = auto_decompress
        self.host, self.port = parse_listen(listen)
        self._name = name
        self._limits = limits
        self._metrics = metrics
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._listeners: list[socket.socket] = []
        self._accepting: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self._shutdown_timeout,
            keepalive_timeout=self._limits.idle_timeout,
            auto_decompress=self._auto_decompress,
        )
        await runner.setup()
        assert runner.server is not None
        try:
            listeners = _listeners(self.host, self.port, LISTEN_BACKLOG)
        except BaseException:
            await runner.cleanup()
            raise
        gate = _ConnectionGate(runner.server, self._limits, self._metrics, self._name, self._lane)
        self._runner, self._listeners = runner, listeners
        self._accepting = [asyncio.create_task(gate.serve(sock)) for sock in listeners]
        if self.port == 0:  # the bound port when asked for any free one
            self.port = listeners[0].getsockname()[1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        accepting, self._accepting = self._accepting, []
        listeners, self._listeners = self._listeners, []
        for task in accepting:
            task.cancel()
        await asyncio.gather(*accepting, return_exceptions=True)
        for sock in listeners:
            sock.close()
        if runner is None:
            return
        # Both let requests in progress finish, then close their connections.
        if self._lane is None:
            await runner.cleanup()
        else:
            await asyncio.gather(self._lane.shutdown(self._shutdown_timeout), runner.cleanup())
