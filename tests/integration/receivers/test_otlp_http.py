"""OTLP/HTTP in front of a real span pipeline, exporting to the OTLP test double (for the
failures a real Jaeger cannot show on demand): the answers the OTLP/HTTP spec asks for, and
that a 200 comes only once the spans are sent or fsync'd in the disk queue."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from agent.core.diskqueue.queue import DiskQueue
from agent.core.metrics import PREFIX
from tests.doubles.otlp_receiver import Fault, FaultInjectingOtlpReceiver
from tests.harness.agent_process import parse_metrics
from tests.harness.eventually import eventually
from tests.integration.receivers.helpers import Running, receiver_config, running_receiver
from tests.unit.receivers.otlp.test_decode import otlp_json, proto_span, request_of

pytestmark = pytest.mark.integration

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def double() -> Iterator[FaultInjectingOtlpReceiver]:
    with FaultInjectingOtlpReceiver() as receiver:
        yield receiver


def body_of(count: int, service: str = "svc", **overrides: object) -> bytes:
    request = request_of(*(proto_span(i, **overrides) for i in range(count)), service=service)
    return bytes(request.SerializeToString())


async def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers or PROTOBUF) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


def metric(running: Running, name: str) -> float:
    """One sample of the in-process registry, by name without the agent's prefix."""
    samples = parse_metrics(running.metrics.render().decode())
    return samples.get(PREFIX + name, 0.0)


async def test_protobuf_request_is_answered_after_the_spans_are_sent(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    async with running_receiver(receiver_config(tmp_path, double.endpoint)) as running:
        status, body, headers = await post(running.url, body_of(5))
        assert status == 200
        assert headers["Content-Type"] == "application/x-protobuf"
        assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
        # Answered only after the export: the double holds them already, no waiting needed.
        spans = double.accepted_spans()
        assert sorted(span.name for _, span in spans) == [f"op-{i}" for i in range(5)]
        assert {service for service, _ in spans} == {"svc"}
        assert metric(running, "otlp_receiver_spans_accepted_total") == 5


async def test_gzip_json_request_gets_a_json_answer(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    request = request_of(proto_span(0), proto_span(1))
    async with running_receiver(receiver_config(tmp_path, double.endpoint)) as running:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        status, body, answer_headers = await post(
            running.url, gzip.compress(otlp_json(request)), headers
        )
        assert (status, body) == (200, b"{}")
        assert answer_headers["Content-Type"] == "application/json"
        assert len(double.accepted_spans()) == 2


async def test_invalid_spans_get_partial_success_and_the_rest_go_through(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    request = request_of(proto_span(0), proto_span(1, span_id=b"\x01\x02"), proto_span(2))
    async with running_receiver(receiver_config(tmp_path, double.endpoint)) as running:
        status, body, _ = await post(running.url, request.SerializeToString())
        assert status == 200
        partial = ExportTraceServiceResponse.FromString(body).partial_success
        assert partial.rejected_spans == 1
        assert "bad_span_id" in partial.error_message and "spans[1]" in partial.error_message
        assert sorted(span.name for _, span in double.accepted_spans()) == ["op-0", "op-2"]
        assert metric(running, 'otlp_receiver_spans_rejected_total{reason="bad_span_id"}') == 1

        obj = orjson.loads(otlp_json(request_of(proto_span(0))))
        obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "zz"
        headers = {"Content-Type": "application/json"}
        status, body, _ = await post(running.url, orjson.dumps(obj), headers)
        assert status == 200
        answer = orjson.loads(body)
        assert answer["partialSuccess"]["rejectedSpans"] == "1"
        assert "bad_span_id" in answer["partialSuccess"]["errorMessage"]


@pytest.mark.parametrize(
    "case",
    [
        (b"\xff\xff\xff", PROTOBUF, 400, "bad_request"),
        (b"{oops", {"Content-Type": "application/json"}, 400, "bad_request"),
        (b"\x1f\x8bnot gzip", {**PROTOBUF, "Content-Encoding": "gzip"}, 400, "bad_compression"),
        (b"", {**PROTOBUF, "Content-Encoding": "br"}, 415, "unsupported_encoding"),
        (b"x", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ],
)
async def test_bad_requests_get_a_status_body_and_are_counted(
    tmp_path: Path,
    double: FaultInjectingOtlpReceiver,
    case: tuple[bytes, dict[str, str], int, str],
) -> None:
    body, headers, status, code = case
    async with running_receiver(receiver_config(tmp_path, double.endpoint)) as running:
        answer_status, answer, _ = await post(running.url, body, headers)
        assert answer_status == status
        if headers["Content-Type"] == "application/json":
            assert orjson.loads(answer)["message"].startswith(code)
        else:
            assert code.encode() in answer  # google.rpc.Status.message
        assert (
            metric(running, f'otlp_receiver_requests_total{{outcome="{code}",transport="http"}}')
            == 1
        )
        assert double.accepted_spans() == []


async def test_bodies_over_the_limit_get_413_compressed_or_inflated(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    config = receiver_config(tmp_path, double.endpoint, receivers__otlp__max_body_bytes="16KiB")
    big = body_of(1, name="x" * 40_000)
    async with running_receiver(config) as running:
        status, _, _ = await post(running.url, big)
        assert status == 413
        status, answer, _ = await post(
            running.url, gzip.compress(big), {**PROTOBUF, "Content-Encoding": "gzip"}
        )
        assert status == 413
        assert b"inflated body is over 16384 bytes" in answer
        assert double.accepted_spans() == []


async def test_bearer_token_is_required_when_set(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    config = receiver_config(tmp_path, double.endpoint, receivers__otlp__auth_token="s3cret")
    async with running_receiver(config) as running:
        status, _, headers = await post(running.url, body_of(1))
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        status, _, _ = await post(
            running.url, body_of(1), {**PROTOBUF, "Authorization": "Bearer no"}
        )
        assert status == 401
        good = {**PROTOBUF, "Authorization": "Bearer s3cret"}
        status, _, _ = await post(running.url, body_of(1), good)
        assert status == 200
        assert len(double.accepted_spans()) == 1


async def test_while_the_endpoint_fails_spans_are_fsynced_in_the_queue_before_200(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    double.always(Fault.http(503, retry_after="30"))
    config = receiver_config(tmp_path, double.endpoint)
    async with running_receiver(config) as running:
        status, _, _ = await post(running.url, body_of(7))
        assert status == 200
        _, spans, _, _ = running.pipeline.sender.queue_depth()
        assert spans == 7
    # The pipeline is stopped: what the 200 promised is on disk.
    queue = DiskQueue(Path(config.data_dir) / "queue" / "spans", max_bytes=2**30)
    await queue.open()
    items = await queue.get(100, timeout=0.1)
    await queue.close()
    assert len(items) == 1


async def test_a_full_disk_queue_gets_503_with_retry_after(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    double.always(Fault.http(503))
    config = receiver_config(
        tmp_path,
        double.endpoint,
        export__queue__max_bytes="1MiB",
        export__compression="none",
        export__max_request_bytes="64KiB",
        receivers__otlp__timeout="1s",
        receivers__otlp__retry_after="3s",
    )
    big_attribute = "y" * 20_000
    async with running_receiver(config) as running:
        answers = []
        for _ in range(80):
            status, _, headers = await post(running.url, body_of(2, name=big_attribute))
            answers.append((status, headers.get("Retry-After")))
            if status != 200:
                break
        assert answers[-1] == (503, "3")
        assert all(status == 200 for status, _ in answers[:-1])
        refused = 'otlp_receiver_requests_total{outcome="queue_full",transport="http"}'
        late = 'otlp_receiver_requests_total{outcome="not_durable_in_time",transport="http"}'
        assert metric(running, refused) + metric(running, late) == 1


async def test_too_many_pending_spans_get_429(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    double.always(Fault.hang(3.0))
    config = receiver_config(
        tmp_path,
        double.endpoint,
        receivers__otlp__max_pending_spans="10",
        receivers__otlp__retry_after="2s",
        export__timeout="5s",
    )
    async with running_receiver(config) as running:
        import asyncio

        first = asyncio.create_task(post(running.url, body_of(8)))
        await asyncio.sleep(0)
        for _ in range(200):
            if running.receiver.intake.pending_spans:
                break
            await asyncio.sleep(0.01)
        status, _, headers = await post(running.url, body_of(8))
        assert (status, headers.get("Retry-After")) == (429, "2")
        assert (await first)[0] == 200


async def test_unknown_routes_and_methods(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    async with running_receiver(receiver_config(tmp_path, double.endpoint)) as running:
        base = running.url.removesuffix("/v1/traces")
        async with aiohttp.ClientSession() as session:
            async with session.get(running.url) as response:
                assert response.status == 405 and response.headers["Allow"] == "POST"
            async with session.post(base + "/v1/metrics", data=b"") as response:
                assert response.status == 404


async def test_connections_past_the_cap_get_503_and_idle_ones_are_closed(
    tmp_path: Path, double: FaultInjectingOtlpReceiver
) -> None:
    config = receiver_config(
        tmp_path,
        double.endpoint,
        receivers__otlp__http__max_connections="2",
        receivers__otlp__http__idle_timeout="300ms",
    )
    async with running_receiver(config) as running:
        host, port = running.receiver.http.host, running.receiver.http.port
        held = [await asyncio.open_connection(host, port) for _ in range(2)]
        await eventually(
            lambda: metric(running, 'http_connections_open{server="otlp"}') == 2,
            what="both connections served",
        )
        reader, writer = await asyncio.open_connection(host, port)
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"too_many_connections" in answer
        assert metric(running, 'http_connections_refused_total{server="otlp"}') == 1
        # The held connections never send a request head: closed by the idle timeout.
        for idle_reader, idle_writer in held:
            assert await asyncio.wait_for(idle_reader.read(), timeout=5) == b""
            idle_writer.close()
        status, _, _ = await post(running.url, body_of(1))
        assert status == 200


def test_request_body_from_the_double_decodes() -> None:
    # The helper bodies are real ExportTraceServiceRequests (guards the tests above).
    assert (
        len(ExportTraceServiceRequest.FromString(body_of(3)).resource_spans[0].scope_spans[0].spans)
        == 3
    )
