"""Small shared pieces for the agent's aiohttp servers: listen addresses and JSON errors."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


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


class ServerRunner:
    """Runs one aiohttp Application on host:port with the lifecycle contract."""

    def __init__(self, app: web.Application, listen: str, *, shutdown_timeout: float = 5.0) -> None:
        self.app = app
        self.host, self.port = parse_listen(listen)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=self._shutdown_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            server = site._server  # the bound port when asked for any free one
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
