"""The small HTTP/1.1 delivery client against a raw local socket server that answers exactly
as each test scripts it (lengths, chunks, closes), and the XACK coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from agent.messages.subscribe.http1 import ConnectError, Http1Client, HttpProtocolError
from agent.messages.subscribe.protocols import Request
from agent.messages.subscribe.streams import AckBatcher
from tests.harness.ports import free_port

REQUEST = Request(b'{"id":"m1"}', {"Content-Type": "application/json", "X-Message-Id": "m1"})


class ScriptedServer:
    """Reads one request head + body per answer and writes the next scripted answer; None
    closes the connection without answering."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    servers: list[asyncio.Server] = []

    async def start(script: ScriptedServer) -> str:
        port = free_port()
        servers.append(await asyncio.start_server(script.handle, "127.0.0.1", port))
        return f"http://127.0.0.1:{port}/events?x=1"

    yield start
    for server in servers:
        server.close()


async def test_request_format_and_kept_alive_reuse(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n",
        ]
    )
    client = Http1Client(await serve(script), max_idle=2)
    first = await client.post(REQUEST)
    second = await client.post(REQUEST)
    assert (first.status, first.body, second.status) == (200, b"ok", 503)
    assert script.connections == 1
    head = script.requests[0]
    assert head.startswith(b"POST /events?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-Message-Id: m1\r\n" in head and head.endswith(b'\r\n\r\n{"id":"m1"}')
    await client.close()


async def test_chunked_answer_and_connection_close(serve) -> None:  # type: ignore[no-untyped-def]
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'4\r\n{"st\r\ne\r\natus":"RETRY"}\r\n0\r\n\r\n'
    )
    script = ScriptedServer([chunked, b"HTTP/1.0 204 No Content\r\n\r\n"])
    client = Http1Client(await serve(script), max_idle=2)
    reply = await client.post(REQUEST)
    assert reply.body == b'{"status":"RETRY"}'
    assert (await client.post(REQUEST)).status == 204
    assert script.connections == 2  # Connection: close was honoured
    await client.close()


async def test_a_kept_alive_connection_closed_by_the_app_is_retried_once(serve) -> None:  # type: ignore[no-untyped-def]
    script = ScriptedServer(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            None,
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]
    )
    client = Http1Client(await serve(script), max_idle=2)
    await client.post(REQUEST)
    assert (await client.post(REQUEST)).status == 200  # went out again on a new connection
    assert script.connections == 2
    await client.close()


async def test_refused_and_garbage(serve) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectError):
        await Http1Client(f"http://127.0.0.1:{free_port()}/", max_idle=1).post(REQUEST)
    client = Http1Client(await serve(ScriptedServer([b"SMTP ready\r\n\r\n"])), max_idle=1)
    with pytest.raises(HttpProtocolError):
        await client.post(REQUEST)
    with pytest.raises(ValueError, match="http:// URLs only"):
        Http1Client("https://app/", max_idle=1)


async def test_acks_finishing_together_go_in_one_xack() -> None:
    sent: list[list[bytes]] = []
    release = asyncio.Event()

    async def xack(ids: Sequence[bytes]) -> None:
        sent.append(list(ids))
        await release.wait()

    batcher = AckBatcher(xack)
    first = asyncio.ensure_future(batcher.ack([b"1-0"]))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.ack([f"{n}-0".encode()])) for n in (2, 3)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *later)
    assert sent == [[b"1-0"], [b"2-0", b"3-0"]]


async def test_a_failed_xack_reaches_every_waiter() -> None:
    async def broken(ids: Sequence[bytes]) -> None:
        raise ConnectionError("gone")

    batcher = AckBatcher(broken)
    results = await asyncio.gather(
        batcher.ack([b"1-0"]), batcher.ack([b"2-0"]), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
