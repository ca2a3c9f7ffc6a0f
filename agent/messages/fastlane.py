"""The publish listener's fast lane: an asyncio protocol per connection that frames plain
HTTP/1.1 publishes itself and gives the connection to aiohttp at the first request that is not
one (agent.messages.publishhead says which are).

aiohttp costs about as much CPU per request as the whole publish behind it (docs/benchmarks.md);
this lane parses a head with a few bytes operations, serves the request with the same
`PublishCore` as the aiohttp routes, and writes the answer in one buffer. What it keeps of
HTTP/1.1: keep-alive (Connection: close honoured), pipelined requests answered in order, the
idle timeout (no complete head within proxy.idle_timeout: closed), the body read timeout (408
from the core), backpressure (reading pauses while writes are paused or much is buffered) and a
graceful stop. A hand-off happens only between requests, after the answer to the last one was
written, with the unparsed bytes from the first byte of the request aiohttp is to serve.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import ClassVar, cast

from aiohttp import __version__ as aiohttp_version

from agent.config.tree import ProxyConfig
from agent.core.metrics import Metrics
from agent.messages.publish import PublishCore, Reply
from agent.messages.publishhead import MAX_HEAD_BYTES, Head, parse_head

log = logging.getLogger("agent.messages.fastlane")

IDLE_SLACK = 0.01
"""An idle connection is closed up to this much before its idle timeout rather than re-arm a
timer for the rest (the loop's clock and timers have a millisecond grain)."""
HIGH_WATER = 256 * 1024
"""Bytes buffered past the body being read before reading pauses (pipelining clients)."""
SERVER = f"Python/{sys.version_info[0]}.{sys.version_info[1]} aiohttp/{aiohttp_version}".encode()
"""The Server header aiohttp sends, so both roads answer alike."""
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_INTERNAL = Reply(
    500, b'{"error":{"code":"internal","message":"the agent failed to answer; see its log"}}'
)


class FastLane:
    """The lane's shared state: the core, the connections it holds, whether it is stopping."""

    def __init__(self, core: PublishCore, config: ProxyConfig, metrics: Metrics) -> None:
        self.core = core
        self.max_body_bytes = config.max_body_bytes
        self.idle_timeout = config.idle_timeout
        self.read_timeout = config.read_timeout
        self.stopping = False
        self.connections: set[FastConnection] = set()
        self.handoffs = metrics.counter(
            "proxy_fast_lane_handoffs_total",
            "Connections the publish API's fast lane gave to aiohttp at a request it does not "
            "serve (another route, chunked or compressed bodies, HTTP/1.0, odd heads).",
        )

    def connection(self, fallback: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        return FastConnection(self, fallback)

    async def shutdown(self, grace: float) -> None:
        self.stopping = True
        busy = []
        for connection in list(self.connections):
            task = connection.task
            if task is None:
                connection.close()
            else:
                busy.append(task)
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for connection in list(self.connections):
            connection.close()


class FastConnection(asyncio.Protocol):
    """One connection while the fast lane serves it; afterwards a pass-through to aiohttp."""

    def __init__(self, lane: FastLane, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._lane = lane
        self._fallback = fallback
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handed: asyncio.Protocol | None = None
        self.task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        """When the connection last began to wait for a request (loop time); None while one is
        served. One timer checks it, instead of one armed and cancelled per request."""
        self._body_length = 0
        self._body_taken = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_resumed: asyncio.Future[None] | None = None
        self._eof = False
        self._discard = 0
        """Bytes of a refused body still to be read and dropped before the connection closes."""

    # -- transport events --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._lane.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lane.connections.discard(self)
        self._cancel_idle()
        if self._handed is not None:
            self._handed.connection_lost(exc)
            return
        self._transport = None
        waiter, self._body_waiter = self._body_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client closed the connection"))
        if self._writing_resumed is not None and not self._writing_resumed.done():
            self._writing_resumed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._handed is not None:
            self._handed.data_received(data)
            return
        if self._discard:
            if len(data) < self._discard:
                self._discard -= len(data)
            else:
                self._discard = 0
                self.close()
            return
        buffer = self._buffer
        buffer += data
        if self.task is None:
            self._next()
        elif self._body_waiter is not None and len(buffer) >= self._body_length:
            self._body_waiter.set_result(None)
            self._body_waiter = None
        if len(self._buffer) > HIGH_WATER + self._body_length and self._transport is not None:
            self._pause_reading()

    def eof_received(self) -> bool | None:
        if self._handed is not None:
            return self._handed.eof_received()
        self._eof = True
        # Half-closed: the answer to a request in flight can still be written.
        return self.task is not None

    def pause_writing(self) -> None:
        if self._handed is not None:
            self._handed.pause_writing()
        elif self._writing_resumed is None:
            self._writing_resumed = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._handed is not None:
            self._handed.resume_writing()
            return
        resumed, self._writing_resumed = self._writing_resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def close(self) -> None:
        if self._handed is None and self._transport is not None:
            self._transport.close()

    # -- requests ----------------------------------------------------------------------------

    def _next(self) -> None:
        """Starts the next request if its head is complete, or gives the connection away."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._lane.stopping:
            return
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._hand_off()
            elif self._eof:
                transport.close()
            return
        head = parse_head(bytes(buffer[:end]), self._lane.max_body_bytes)
        if head is None:
            self._hand_off()
            return
        del buffer[: end + 4]
        self._idle_since = None
        self._body_length = head.request.content_length or 0
        self._body_taken = False
        self.task = self._loop.create_task(self._serve(head))

    async def _serve(self, head: Head) -> None:
        try:
            reply = await self._lane.core.handle(head.request, self)
        except ConnectionError:
            return  # the client is gone; nothing to answer
        except Exception:
            log.exception("publish failed")
            reply, head = _INTERNAL, head._replace(keep_alive=False)
        transport = self._transport
        if transport is None:
            return
        body_here = self._skip_body()
        keep_alive = head.keep_alive and body_here and not self._lane.stopping
        transport.write(_response(reply, keep_alive))
        if not body_here:
            self._drain()
            return
        if not keep_alive or (self._eof and not self._buffer):
            transport.close()
            return
        if self._writing_resumed is not None:
            await self._writing_resumed
        self.task = None
        self._body_length = 0
        self._resume_reading()
        self._arm_idle()
        self._next()

    def _skip_body(self) -> bool:
        """After the answer: drop a body the core did not read when it is all here; False when
        it is not (the connection closes rather than wait for bytes nobody wants)."""
        if self._body_taken:
            return True
        length = self._body_length
        if len(self._buffer) < length:
            return False
        del self._buffer[:length]
        self._body_taken = True
        return True

    def _drain(self) -> None:
        """Reads and drops the rest of a body the core refused unread, so the client can finish
        sending it and read the answer, then closes (within the body read timeout)."""
        self._discard = self._body_length - len(self._buffer)
        self._buffer.clear()
        self._resume_reading()
        self._cancel_idle()
        self._idle = self._loop.call_later(self._lane.read_timeout, self.close)

    # -- the body, as the core's BodySource ----------------------------------------------------

    def at_hand(self) -> bytes | None:
        buffer, length = self._buffer, self._body_length
        if len(buffer) < length:
            return None
        self._body_taken = True
        if len(buffer) == length:
            body = bytes(buffer)
            buffer.clear()
            return body
        body = bytes(buffer[:length])
        del buffer[:length]
        return body

    async def read(self) -> bytes:
        while (body := self.at_hand()) is None:
            if self._transport is None or self._eof:
                message = "the client closed the connection inside the body"
                raise ConnectionResetError(message)
            self._resume_reading()
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        return body

    # -- hand-off, timers, flow control ------------------------------------------------------

    def _hand_off(self) -> None:
        transport = self._transport
        assert transport is not None
        self._lane.handoffs.inc()
        self._lane.connections.discard(self)
        self._cancel_idle()
        self._resume_reading()
        handed = self._handed = self._fallback()
        handed.connection_made(transport)
        if self._writing_resumed is not None:
            handed.pause_writing()
        data = bytes(self._buffer)
        self._buffer.clear()
        handed.data_received(data)
        if self._eof and handed.eof_received() is not True:
            transport.close()

    def _arm_idle(self) -> None:
        """From now on the connection waits for a request: closed after proxy.idle_timeout."""
        self._idle_since = self._loop.time()
        if self._idle is None:
            self._idle = self._loop.call_later(self._lane.idle_timeout, self._idle_timeout)

    def _cancel_idle(self) -> None:
        self._idle_since = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_timeout(self) -> None:
        """Close the connection if it has waited proxy.idle_timeout for a request; if its wait
        began after the timer was armed, check again when that wait would end."""
        self._idle = None
        since = self._idle_since
        if since is None:
            return  # a request is being served: its end arms the timer again
        left = since + self._lane.idle_timeout - self._loop.time()
        if left > IDLE_SLACK:
            self._idle = self._loop.call_later(left, self._idle_timeout)
        elif self.task is None:
            self.close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()


class _DateLine:
    """The Date header line, made once a second."""

    second: ClassVar[int] = 0
    line: ClassVar[bytes] = b""

    @classmethod
    def now(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return cls.line


def _response(reply: Reply, keep_alive: bool) -> bytes:
    """The whole answer as one buffer: status line, headers, body."""
    parts = [_STATUS_LINES[reply.status]]
    for name, value in reply.headers:
        parts.append(f"{name}: {value}\r\n".encode())
    if reply.body:
        parts.append(b"Content-Type: application/json\r\n")
    if reply.status != 204:
        parts.append(b"Content-Length: %d\r\n" % len(reply.body))
    parts.append(_DateLine.now())
    parts.append(b"Server: " + SERVER + b"\r\n")
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(reply.body)
    return b"".join(parts)
