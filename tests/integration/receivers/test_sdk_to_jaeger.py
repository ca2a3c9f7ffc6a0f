"""Real SDK exporters → the agent's OTLP receiver → a real Jaeger: every span, attribute,
event, link and status arrives; with Jaeger stopped meanwhile, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonSpanExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tests.harness.fixture_types import JaegerFactory
from tests.harness.jaeger import Jaeger
from tests.harness.jaeger_query import StoredSpan
from tests.integration.receivers.helpers import receiver_config, running_receiver
from tests.integration.receivers.sdk import sdk_spans

pytestmark = pytest.mark.integration


async def export(exporter: SpanExporter, spans: Sequence[ReadableSpan]) -> SpanExportResult:
    """The SDK exporters block: run one in a thread, as the SDK's batch processor would."""
    try:
        return await asyncio.to_thread(exporter.export, spans)
    finally:
        exporter.shutdown()


def check_stored(sent: Sequence[ReadableSpan], stored: list[StoredSpan]) -> None:
    by_id = {span.span_id: span for span in stored}
    assert len(by_id) == len(sent)
    for span in sent:
        context = span.get_span_context()
        assert context is not None
        got = by_id[f"{context.span_id:016x}"]
        assert got.trace_id.zfill(32) == f"{context.trace_id:032x}"
        assert got.operation_name == span.name
        assert got.process_tags.get("pod") == "p-1"
        assert got.tags["otel.scope.name"] == "checkout-lib"
        for key, value in (span.attributes or {}).items():
            if isinstance(value, tuple):
                continue  # Jaeger stores arrays as JSON text
            assert got.tags[key] == value, key
        if span.parent is not None:
            assert got.parent_span_id == f"{span.parent.span_id:016x}"
        if span.status.status_code.name == "ERROR":
            assert got.tags["error"] is True
            assert got.tags["otel.status_description"] == "deadlock detected"
        assert [log.fields.get("event") for log in got.logs] == [e.name for e in span.events]
        for event, log in zip(span.events, got.logs, strict=True):
            for key, value in (event.attributes or {}).items():
                assert log.fields[key] == value
        follows = [ref for ref in got.references if ref.get("refType") == "FOLLOWS_FROM"]
        assert len(follows) == len(span.links)
        for link, ref in zip(span.links, follows, strict=True):
            assert ref["spanID"].zfill(16) == f"{link.context.span_id:016x}"


@pytest.mark.parametrize("encoding", ["protobuf", "json", "grpc"])
async def test_sdk_exporter_through_the_receiver_into_jaeger(
    tmp_path: Path, jaeger: Jaeger, service_name: str, encoding: str
) -> None:
    config = receiver_config(
        tmp_path, jaeger.otlp_http_endpoint, receivers__otlp__grpc__enabled="true"
    )
    spans = sdk_spans(service_name, traces=3)
    async with running_receiver(config) as running:
        exporter: SpanExporter
        if encoding == "protobuf":
            exporter = OTLPSpanExporter(endpoint=running.url)
        elif encoding == "json":
            exporter = JsonSpanExporter(endpoint=running.url)
        else:
            grpc_address = running.receiver.addresses()[1]
            exporter = GrpcSpanExporter(endpoint=f"http://{grpc_address}", insecure=True)
        assert await export(exporter, spans) == SpanExportResult.SUCCESS
        assert running.receiver.intake.spans_accepted == len(spans)
    stored = await asyncio.to_thread(jaeger.query.wait_for_spans, service_name, len(spans))
    check_stored(spans, stored)


async def test_jaeger_away_then_back_loses_nothing(
    tmp_path: Path, jaeger_factory: JaegerFactory, service_name: str
) -> None:
    jaeger = jaeger_factory()
    config = receiver_config(tmp_path, jaeger.otlp_http_endpoint)
    async with running_receiver(config) as running:
        first = sdk_spans(service_name + "-before", traces=2)
        assert (
            await export(OTLPSpanExporter(endpoint=running.url), first) == SpanExportResult.SUCCESS
        )
        await asyncio.to_thread(jaeger.stop)
        during = sdk_spans(service_name, traces=20)
        # Answered 200 while Jaeger is down: the spans are in the fsync'd disk queue.
        assert (
            await export(OTLPSpanExporter(endpoint=running.url), during) == SpanExportResult.SUCCESS
        )
        _, queued, _, _ = running.pipeline.sender.queue_depth()
        assert queued == len(during)
        await asyncio.to_thread(jaeger.start)
        stored = await asyncio.to_thread(
            jaeger.query.wait_for_spans, service_name, len(during), timeout=30.0
        )
    check_stored(during, stored)
