"""The OTLP/HTTP push function against the fault-injecting receiver double (and a real Jaeger).

Each fault is one a real server cannot be made to show on demand; the happy path is also
checked against the real Jaeger so the double's idea of "accepted" matches the real one.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest

from agent.config.tree import ExportConfig
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError, RetryableError
from agent.spans.encode.protobuf import build_request, encode_span
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.export.exporter import OtlpHttpExporter, pack_request
from agent.spans.model import Span
from tests.doubles.otlp_receiver import Fault, FaultInjectingOtlpReceiver
from tests.harness import Jaeger
from tests.harness.ports import LOOPBACK, free_port

pytestmark = pytest.mark.integration


def request_body(service: str, count: int = 3) -> bytes:
    now = time.time_ns()
    spans = [
        Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op-{i}",
            start_ns=now,
            end_ns=now + 1_000_000,
            service_name=service,
        )
        for i in range(count)
    ]
    key = resource_key(spans[0])
    return build_request({key: [encode_span(s) for s in spans]}, Resources())


@pytest.fixture
def receiver() -> Iterator[FaultInjectingOtlpReceiver]:
    with FaultInjectingOtlpReceiver() as double:
        yield double


def export_config(endpoint: str, **changes: object) -> ExportConfig:
    return replace(ExportConfig(), endpoint=endpoint, timeout=1.0, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def exporter(receiver: FaultInjectingOtlpReceiver) -> AsyncIterator[OtlpHttpExporter]:
    config = export_config(receiver.endpoint, headers={"x-tenant": "blue"})
    instance = OtlpHttpExporter(config, Metrics())
    await instance.start()
    yield instance
    await instance.close()


def record(count: int = 3, *, gzipped: bool = True) -> bytes:
    return pack_request(request_body("svc", count), count, gzipped=gzipped, json=False)


async def test_accepted_request_is_gzipped_protobuf_with_configured_headers(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    await exporter.push(record(3))
    [seen] = receiver.requests
    assert seen.headers["Content-Type"] == "application/x-protobuf"
    assert seen.headers["Content-Encoding"] == "gzip"
    assert seen.headers["x-tenant"] == "blue"
    assert [span.name for _, span in seen.spans] == ["op-0", "op-1", "op-2"]
    assert exporter.spans_exported == 3


async def test_503_with_retry_after_seconds_is_retryable_with_the_delay(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.http(503, retry_after="7", message="overloaded"))
    with pytest.raises(RetryableError) as caught:
        await exporter.push(record())
    assert caught.value.retry_after == 7.0
    assert "503" in str(caught.value) and "overloaded" in str(caught.value)
    assert exporter.spans_exported == 0


async def test_429_with_an_http_date_retry_after(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    receiver.script(Fault.http(429, retry_after=when))
    with pytest.raises(RetryableError) as caught:
        await exporter.push(record())
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 31


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_errors_are_retryable(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver, status: int
) -> None:
    receiver.script(Fault.http(status))
    with pytest.raises(RetryableError):
        await exporter.push(record())


async def test_400_is_permanent_and_carries_the_server_message(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.http(400, message="span 3: invalid trace id"))
    with pytest.raises(PermanentError, match="HTTP 400: span 3: invalid trace id"):
        await exporter.push(record())


async def test_partial_success_is_counted_not_retried(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.partial(2, "2 spans too old"))
    await exporter.push(record(5))
    assert exporter.spans_exported == 3
    assert exporter.spans_rejected == 2
    assert len(receiver.requests) == 1


async def test_hanging_receiver_times_out_as_retryable(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.hang(5))
    started = time.monotonic()
    with pytest.raises(RetryableError, match="timed out"):
        await exporter.push(record())
    assert time.monotonic() - started < 3


async def test_dropped_connection_is_retryable(
    exporter: OtlpHttpExporter, receiver: FaultInjectingOtlpReceiver
) -> None:
    receiver.script(Fault.drop())
    with pytest.raises(RetryableError, match="unreachable"):
        await exporter.push(record())


async def test_refused_connection_is_retryable_and_says_unreachable() -> None:
    closed_port = free_port()  # claimed, never listened on
    exporter = OtlpHttpExporter(
        export_config(f"http://{LOOPBACK}:{closed_port}/v1/traces"), Metrics()
    )
    await exporter.start()
    try:
        with pytest.raises(RetryableError, match="otlp endpoint unreachable"):
            await exporter.push(record())
    finally:
        await exporter.close()


async def test_json_protocol_sends_json(receiver: FaultInjectingOtlpReceiver) -> None:
    exporter = OtlpHttpExporter(export_config(receiver.endpoint), Metrics())
    await exporter.start()
    body = b'{"resourceSpans":[]}'
    try:
        await exporter.push(pack_request(body, 0, gzipped=False, json=True))
    finally:
        await exporter.close()
    [seen] = receiver.requests
    assert seen.headers["Content-Type"] == "application/json"
    assert "Content-Encoding" not in seen.headers
    assert seen.json_body == {"resourceSpans": []}


async def test_unreadable_record_is_permanent(exporter: OtlpHttpExporter) -> None:
    with pytest.raises(PermanentError, match="unreadable export record"):
        await exporter.push(b"\x09")


async def test_real_jaeger_accepts_what_the_exporter_sends(
    jaeger: Jaeger, service_name: str
) -> None:
    exporter = OtlpHttpExporter(export_config(jaeger.otlp_http_endpoint), Metrics())
    await exporter.start()
    body = request_body(service_name, 4)
    try:
        await exporter.push(pack_request(body, 4, gzipped=True, json=False))
    finally:
        await exporter.close()
    stored = await asyncio.to_thread(jaeger.query.wait_for_spans, service_name, 4)
    assert sorted(span.operation_name for span in stored) == ["op-0", "op-1", "op-2", "op-3"]
    assert exporter.spans_exported == 4
