"""POSTs deliveries to the application over kept-alive connections: our small HTTP/1.1
client for http:// (the app beside the sidecar), aiohttp's client for https://."""

from __future__ import annotations

import asyncio

import aiohttp

from agent.messages.subscribe.http1 import ConnectError, Http1Client, HttpProtocolError
from agent.messages.subscribe.protocols import Reply, Request

MAX_REPLY_BYTES = 1024 * 1024  # an app's answer is a status; more is not read into memory


class AppUnreachableError(Exception):
    """The request got no HTTP answer. `connected` tells a request the app may have seen
    (reset, timed out: an attempt, since the message may be what breaks it) from a refused
    connection (the app is down: the message waits without using up its attempts)."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


class AppClient:
    def __init__(self, endpoint: str, *, timeout: float, connections: int) -> None:
        self.endpoint = endpoint
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._plain = Http1Client(endpoint, connections) if endpoint.startswith("http:") else None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, force_close=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def post(self, request: Request) -> Reply:
        if self._plain is None:
            return await self._post_tls(request)
        try:
            async with asyncio.timeout(self._timeout.total):
                return await self._plain.post(request)
        except ConnectError as error:
            raise AppUnreachableError(f"{type(error).__name__}: {error}", connected=False) from None
        except (OSError, TimeoutError, HttpProtocolError) as error:
            raise AppUnreachableError(f"{type(error).__name__}: {error}", connected=True) from None

    async def _post_tls(self, request: Request) -> Reply:
        session = self._open()
        try:
            async with session.post(
                self.endpoint, data=request.body, headers=request.headers
            ) as response:
                body = await response.content.read(MAX_REPLY_BYTES)
                return Reply(response.status, body)
        except aiohttp.ClientConnectorError as error:
            raise AppUnreachableError(f"{type(error).__name__}: {error}", connected=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise AppUnreachableError(f"{type(error).__name__}: {error}", connected=True) from None

    async def close(self) -> None:
        if self._plain is not None:
            await self._plain.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
