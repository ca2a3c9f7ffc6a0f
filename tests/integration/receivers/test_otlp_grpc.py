"""OTLP/gRPC in front of a real span pipeline (export to the OTLP test double): the same
outcomes as OTLP/HTTP, as gRPC status codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.doubles.otlp_receiver import FaultInjectingOtlpReceiver
from tests.integration.receivers.helpers import Running, receiver_config, running_receiver
from tests.unit.receivers.otlp.test_decode import proto_span, request_of

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def double() -> Iterator[FaultInjectingOtlpReceiver]:
    with FaultInjectingOtlpReceiver() as receiver:
        yield receiver


async def export(
    running: Running, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> bytes:
    address = running.receiver.addresses()[1]
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(EXPORT)
        answer: bytes = await call(body, metadata=metadata, timeout=10)
        return answer


async def test_export_partial_success_and_bad_bodies(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    config = receiver_config(tmp_path, double.endpoint, receivers__otlp__grpc__enabled="true")
    request = request_of(proto_span(0), proto_span(1, span_id=b"\x00" * 3))
    async with running_receiver(config) as running:
        answer = ExportTraceServiceResponse.FromString(
            await export(running, request.SerializeToString())
        )
        assert answer.partial_success.rejected_spans == 1
        assert "bad_span_id" in answer.partial_success.error_message
        assert [span.name for _, span in double.accepted_spans()] == ["op-0"]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export(running, b"\xff\xff\xff")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad_request" in (error.value.details() or "")


async def test_bearer_token_and_size_limit(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    config = receiver_config(
        tmp_path,
        double.endpoint,
        receivers__otlp__grpc__enabled="true",
        receivers__otlp__auth_token="s3cret",
        receivers__otlp__max_body_bytes="16KiB",
    )
    body = request_of(proto_span(0)).SerializeToString()
    async with running_receiver(config) as running:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export(running, body)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = (("authorization", "Bearer s3cret"),)
        assert await export(running, body, token) == b""
        big = request_of(proto_span(1, name="x" * 40_000)).SerializeToString()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await export(running, big, token)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(double.accepted_spans()) == 1
