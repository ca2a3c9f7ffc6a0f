"""The OTLP/HTTP sink the span benchmarks send to: an aiohttp server in its own process that
reads each request, counts its spans (so a run knows when everything arrived, whoever sent it)
and answers 200. Its CPU is nobody's: the benchmarks count only the sender's."""

from __future__ import annotations

import asyncio
import gzip
import multiprocessing
import socket
import time
import urllib.request
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def _span_count(body: bytes) -> int:
    if body[:2] == b"\x1f\x8b":  # aiohttp inflates gzip request bodies itself, unless told not
        body = gzip.decompress(body)
    request = ExportTraceServiceRequest.FromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def _serve(port: int, ready: Any) -> None:
    received = 0

    async def traces(request: web.Request) -> web.Response:
        nonlocal received
        body = await request.read()
        received += _span_count(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(received))

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/traces", traces)
        app.router.add_get("/count", count)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


class Sink:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.process: BaseProcess = context.Process(
            target=_serve, args=(self.port, ready), daemon=True
        )
        self.process.start()
        if not ready.wait(30):
            raise SystemExit("the sink did not start")
        self.endpoint = f"http://127.0.0.1:{self.port}/v1/traces"

    def received(self) -> int:
        """Spans received since the sink started."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/count", timeout=10) as reply:
            return int(reply.read())

    def wait_for(self, total: int, timeout: float) -> None:
        """Until `total` spans have arrived in all; SystemExit after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.received() < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.received()} of {total} spans reached the sink")
            time.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)
