"""One trace in a real Jaeger across the queue: the publishing app's span, the agent's publish
(PRODUCER) and delivery (CONSUMER) spans, and the receiving app's span, parent to child."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from agent.app import Agent
from agent.config.load import load_config
from tests.harness import Jaeger, RedisServer
from tests.harness.jaeger_query import StoredTrace
from tests.integration.messages.subscribe.app import ReceivingApp, Seen, eventually, subscription

pytestmark = pytest.mark.integration


def span_line(trace_id: str, span_id: str, service: str, parent: str | None = None) -> bytes:
    record = {
        "trace_id": trace_id,
        "span_id": span_id,
        "name": f"{service} work",
        "kind": "server" if parent else "client",
        "start_time_unix_nano": time.time_ns() - 1_000_000,
        "duration_us": 800,
        "service": service,
    }
    if parent:
        record["parent_span_id"] = parent
    return orjson.dumps(record) + b"\n"


def write(path: Path, line: bytes) -> None:
    with path.open("ab") as file:
        file.write(line)


async def test_trace_spans_publisher_publish_delivery_and_receiver(
    tmp_path: Path, redis_server: RedisServer, jaeger: Jaeger, service_name: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    spans_file = logs / "apps.log"
    trace_id, publisher_span = os.urandom(16).hex(), os.urandom(8).hex()

    def receive(seen: Seen, count: int) -> None:  # the receiving app writes its span
        parent = seen.headers["traceparent"].split("-")[2]
        write(spans_file, span_line(trace_id, os.urandom(8).hex(), f"{service_name}-recv", parent))

    app = ReceivingApp(answer=receive)
    await app.start()
    settings = [
        f"data_dir={tmp_path / 'data'}",
        f"redis.url={redis_server.url}",
        "admin.enabled=false",
        "proxy.listen=127.0.0.1:0",
        f"spans.paths={logs}/*.log",
        "spans.format=span-json",
        "spans.poll_interval=50ms",
        f"export.endpoint={jaeger.otlp_http_endpoint}",
        "export.batch.linger=20ms",
        "shutdown_timeout=8s",
        *subscription(app, "traced"),
    ]
    agent = Agent(load_config(environ={}, cli_overrides=settings))
    await agent.start()
    try:
        messages = next(p for p in agent.pipelines if p.name == "messages")
        proxy = f"http://{messages.status()['listen']}"
        write(spans_file, span_line(trace_id, publisher_span, f"{service_name}-pub"))
        async with aiohttp.ClientSession() as http:
            headers = {"traceparent": f"00-{trace_id}-{publisher_span}-01"}
            target = f"{proxy}/v1/topics/traced/messages"
            async with http.post(target, json={"data": {"n": 1}}, headers=headers) as response:
                assert response.status == 202
        await eventually(lambda: len(app.seen) == 1, "the delivery")

        def whole_trace() -> StoredTrace | None:
            trace = jaeger.query.trace(trace_id)
            return trace if trace is not None and len(trace.spans) == 4 else None

        await eventually(lambda: whole_trace() is not None, "four spans in Jaeger", 30)
        trace = whole_trace()
        assert trace is not None
        by_service_kind = {(s.service_name, s.kind): s for s in trace.spans}
        publisher = by_service_kind[(f"{service_name}-pub", "client")]
        producer = by_service_kind[("sidecar-agent", "producer")]
        consumer = by_service_kind[("sidecar-agent", "consumer")]
        receiver = by_service_kind[(f"{service_name}-recv", "server")]
        assert producer.parent_span_id == publisher.span_id
        assert consumer.parent_span_id == producer.span_id
        assert receiver.parent_span_id == consumer.span_id
        assert producer.operation_name == "traced publish"
        assert consumer.tags["messaging.destination.name"] == "traced"
        assert consumer.tags["messaging.delivery.attempt"] == 1
        assert app.seen[0].body["headers"]["traceparent"].split("-")[2] == producer.span_id
    finally:
        await agent.stop()
        await app.stop()
