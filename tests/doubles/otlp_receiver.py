"""A TEST DOUBLE of an OTLP/HTTP traces receiver, for faults a real Jaeger cannot show on demand.

`FaultInjectingOtlpReceiver` answers scripted faults — 429/503 with Retry-After, 400 with a
google.rpc.Status message, partial success, a hang past the client's timeout, a dropped
connection — and otherwise accepts like a collector, recording every request it saw (decoded
with opentelemetry-proto) so tests can check what arrived and in which order.

It runs its own event loop in a thread, so sync tests (driving an agent subprocess) and async
tests (driving a pipeline in-process) use it the same way. Use the real Jaeger fixtures for
everything else.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from tests.harness.ports import LOOPBACK, free_port, release_port


@dataclass(frozen=True)
class Fault:
    """One scripted answer. Build with the class methods."""

    status: int = 200
    retry_after: str | None = None
    message: str = ""
    hang_seconds: float = 0.0
    rejected_spans: int = 0
    drop_connection: bool = False

    @classmethod
    def http(cls, status: int, *, retry_after: str | None = None, message: str = "") -> Fault:
        return cls(status=status, retry_after=retry_after, message=message)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Read the request, then answer nothing for `seconds` (then 200)."""
        return cls(hang_seconds=seconds)

    @classmethod
    def partial(cls, rejected_spans: int, message: str) -> Fault:
        return cls(rejected_spans=rejected_spans, message=message)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without an answer."""
        return cls(drop_connection=True)


@dataclass
class ReceivedRequest:
    at: float
    headers: dict[str, str]
    body_bytes: int
    answered: int  # the HTTP status sent (0: none)
    spans: list[tuple[str, ProtoSpan]] = field(default_factory=list)  # (service.name, span)
    json_body: Any = None


def _service_of(resource_attributes: Any) -> str:
    for attribute in resource_attributes:
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


def decode_request(body: bytes) -> list[tuple[str, ProtoSpan]]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        (_service_of(resource_spans.resource.attributes), span)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def _error_body(status: int, message: str) -> bytes:
    # google.rpc.Status: code = 1 (varint), message = 2 (string); enough for the client.
    text = message.encode()
    return bytes([0x08, 3 if status == 400 else 14, 0x12]) + _varint(len(text)) + text


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class FaultInjectingOtlpReceiver:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._faults: deque[Fault] = deque()
        self._default = Fault()
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    # -- control from the test ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}/v1/traces"

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order, then with the default."""
        with self._lock:
            self._faults.extend(faults)

    def always(self, fault: Fault) -> None:
        """Answer every request not covered by `script` this way (Fault() = accept)."""
        with self._lock:
            self._default = fault

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def accepted_spans(self) -> list[tuple[str, ProtoSpan]]:
        """Spans of requests answered 200, in arrival order."""
        return [span for r in self.requests if r.answered == 200 for span in r.spans]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultInjectingOtlpReceiver:
        self._thread = threading.Thread(target=self._run, name="otlp-receiver-double", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("FaultInjectingOtlpReceiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
            release_port(self.port)

    def __enter__(self) -> FaultInjectingOtlpReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/traces", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self.port = free_port()
        site = web.TCPSite(runner, LOOPBACK, self.port, ssl_context=self._ssl)
        await site.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- answering ---------------------------------------------------------------------------

    def _next_fault(self) -> Fault:
        with self._lock:
            return self._faults.popleft() if self._faults else self._default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = self._next_fault()
        # aiohttp already inflates gzip request bodies; inflate here only if it did not.
        body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        record = ReceivedRequest(time.monotonic(), dict(request.headers), len(raw), 0)
        if request.content_type == "application/json":
            record.json_body = orjson.loads(body)
        else:
            record.spans = decode_request(body)
        with self._lock:
            self._requests.append(record)
        if fault.drop_connection:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if fault.hang_seconds:
            await asyncio.sleep(fault.hang_seconds)
        record.answered = fault.status
        return self._answer(fault)

    def _answer(self, fault: Fault) -> web.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if fault.status != 200:
            return web.Response(
                status=fault.status,
                body=_error_body(fault.status, fault.message),
                headers={**headers, "Content-Type": "application/x-protobuf"},
            )
        response = ExportTraceServiceResponse()
        if fault.rejected_spans or fault.message:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=fault.rejected_spans, error_message=fault.message
                )
            )
        return web.Response(
            body=response.SerializeToString(),
            headers={**headers, "Content-Type": "application/x-protobuf"},
        )
