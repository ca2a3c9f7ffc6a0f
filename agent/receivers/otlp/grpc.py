"""OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, same semantics as
OTLP/HTTP (`intake`), with the HTTP outcome mapped to a gRPC status code.

Imported only when `receivers.otlp.grpc.enabled` is set: grpcio is the optional extra
`sidecar-agent[grpc]`. The request stays raw bytes (no deserializer) so that both transports
decode through the same function. grpcio enforces the size limit (RESOURCE_EXHAUSTED) and
inflates gzip itself. Retryable refusals are UNAVAILABLE, which OTLP exporters retry.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from agent.receivers.otlp.http import success_body
from agent.receivers.otlp.intake import OtlpIntake, Refusal

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code_for(http_status: int) -> Any:
    return _STATUS_CODES.get(http_status, grpc.StatusCode.UNKNOWN)


class OtlpGrpcServer:
    def __init__(self, intake: OtlpIntake, listen: str) -> None:
        self._intake = intake
        self._listen = listen
        self._server: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        host = self._listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        limit = self._intake.max_body_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 0),
            ]
        )
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        self.port = server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {self._listen}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=5.0)

    async def _export(self, body: bytes, context: Any) -> bytes:
        intake = self._intake
        try:
            intake.check_auth(_metadata(context, "authorization"))
            intake.admit()
            decoded = intake.decode(body, json=False)
            peer = context.peer() or ""
            await intake.accept(decoded, f"otlp-grpc {peer}".strip())
        except Refusal as refusal:
            intake.count("grpc", refusal.code)
            await context.abort(status_code_for(refusal.status), str(refusal))
            raise AssertionError("context.abort raises") from None
        intake.count("grpc", "partial" if decoded.rejected else "ok")
        return success_body(decoded, json=False)


def _metadata(context: Any, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None
