"""OTLP/HTTP: `POST /v1/traces`, answered as the OTLP/HTTP specification says.

    200  ExportTraceServiceResponse (partial_success: rejected_spans + error_message when
         some spans were invalid), in the request's encoding
    400  undecodable body; 401 bad token; 413 body over receivers.otlp.max_body_bytes;
    415  other content types or encodings; 429 / 503 with Retry-After: retry later
         (too many spans pending, disk queue full, not durable in time, stopping)

Errors carry a google.rpc.Status body (protobuf or JSON, as the request was), which OTLP
exporters log. The request's spans are durable before the 200 (see `intake`).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from agent.config.tree import OtlpHttpReceiverConfig
from agent.core.http import ConnectionLimits, ServerRunner
from agent.core.metrics import Metrics
from agent.receivers.otlp.decode import Decoded
from agent.receivers.otlp.intake import OtlpIntake, Refusal
from agent.spans.encode.wire import varint

TRACES_PATH = "/v1/traces"
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
JSON_TYPE = "application/json"
# google.rpc.Code for each HTTP status we answer (what a gRPC client would have seen).
GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 429: 8, 503: 14}
_UNKNOWN = 2
_EMPTY_RESPONSE = bytes(ExportTraceServiceResponse().SerializeToString())


def status_protobuf(code: int, message: str) -> bytes:
    """A google.rpc.Status message (code = 1, message = 2), written by hand: the runtime does
    not depend on googleapis-common-protos for two fields."""
    text = message.encode()
    return b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text


def success_body(decoded: Decoded, *, json: bool) -> bytes:
    rejected = decoded.rejected_count
    if json:
        if not rejected:
            return b"{}"
        partial = {"rejectedSpans": str(rejected), "errorMessage": decoded.message()}
        return orjson.dumps({"partialSuccess": partial})
    if not rejected:
        return _EMPTY_RESPONSE
    partial_success = ExportTracePartialSuccess(
        rejected_spans=rejected, error_message=decoded.message()
    )
    return bytes(ExportTraceServiceResponse(partial_success=partial_success).SerializeToString())


class OtlpHttpServer:
    def __init__(
        self,
        intake: OtlpIntake,
        config: OtlpHttpReceiverConfig,
        metrics: Metrics,
        *,
        read_timeout: float,
    ) -> None:
        self._intake = intake
        self._read_timeout = read_timeout
        app = web.Application(client_max_size=intake.max_body_bytes)
        app.router.add_post(TRACES_PATH, self._traces)
        app.router.add_route("*", TRACES_PATH, self._method_not_allowed)
        app.router.add_route("*", "/{path:.*}", self._not_found)
        # aiohttp would inflate gzip itself, but answers a broken stream with its own 400 and
        # a dropped connection; `intake.inflate` gives the OTLP answer and the same limit.
        self._server = ServerRunner(
            app,
            config.listen,
            name="otlp",
            limits=ConnectionLimits(config.max_connections, config.idle_timeout),
            metrics=metrics,
            auto_decompress=False,
        )

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        json = request.content_type == JSON_TYPE
        try:
            decoded = await self._decode(request, json=json)
            await self._intake.accept(decoded, f"otlp-http {request.remote or ''}".strip())
        except Refusal as refusal:
            return self._refused(refusal, json=json)
        self._intake.count("http", "partial" if decoded.rejected else "ok")
        return web.Response(
            body=success_body(decoded, json=json),
            content_type=JSON_TYPE if json else "application/x-protobuf",
        )

    async def _decode(self, request: web.Request, *, json: bool) -> Decoded:
        """Checks cheapest first: a request that will be refused costs no body read."""
        intake = self._intake
        intake.check_auth(request.headers.get("Authorization"))
        if not json and request.content_type not in PROTOBUF_TYPES:
            raise Refusal(
                415,
                "unsupported_media_type",
                f"Content-Type {request.content_type!r}: send application/x-protobuf "
                "or application/json",
            )
        declared = request.content_length
        if declared is not None and declared > intake.max_body_bytes:
            raise _too_large(declared, intake.max_body_bytes)
        intake.admit()
        body = await self._read(request)
        body = intake.inflate(body, request.headers.get("Content-Encoding", ""))
        return intake.decode(body, json=json)

    async def _read(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self._read_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(None, self._intake.max_body_bytes) from None
        except TimeoutError:
            message = f"body not received within {self._read_timeout:g}s"
            raise Refusal(408, "body_timeout", message) from None

    def _refused(self, refusal: Refusal, *, json: bool) -> web.Response:
        self._intake.count("http", refusal.code)
        headers: dict[str, str] = {}
        if refusal.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(refusal.retry_after)))
        if refusal.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        code = GRPC_CODES.get(refusal.status, _UNKNOWN)
        message = str(refusal)
        if json:
            body = orjson.dumps({"code": code, "message": message})
        else:
            body = status_protobuf(code, message)
        return web.Response(
            status=refusal.status,
            body=body,
            headers=headers,
            content_type=JSON_TYPE if json else "application/x-protobuf",
        )

    async def _method_not_allowed(self, request: web.Request) -> web.StreamResponse:
        refusal = Refusal(405, "method_not_allowed", f"{request.method}: export with POST")
        response = self._refused(refusal, json=request.content_type == JSON_TYPE)
        response.headers["Allow"] = "POST"
        return response

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        refusal = Refusal(404, "not_found", f"no route {request.path!r}; traces go to /v1/traces")
        return self._refused(refusal, json=request.content_type == JSON_TYPE)


def _too_large(declared: int | None, limit: int) -> Refusal:
    size = f"body of {declared} bytes" if declared is not None else "body"
    return Refusal(413, "body_too_large", f"{size} is over receivers.otlp.max_body_bytes ({limit})")
