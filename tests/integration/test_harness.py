"""The test harness itself: real Jaeger, redis-server and Redis Cluster behave as tests expect."""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.harness import (
    HarnessError,
    Jaeger,
    ManagedProcess,
    RedisServer,
    claimed_ports,
    eventually,
    eventually_sync,
    find_jaeger_binary,
    free_port,
    release_port,
)
from tests.harness.fixture_types import JaegerFactory, RedisClusterFactory, RedisServerFactory
from tests.harness.ports import PORT_LOCK_DIR, ephemeral_port_range

SPAN_DURATION_NS = 1_234_567  # not a whole number of µs: Jaeger truncates to 1234


def _attribute(key: str, value: str | int | bool | float) -> KeyValue:
    match value:
        case bool():
            return KeyValue(key=key, value=AnyValue(bool_value=value))
        case int():
            return KeyValue(key=key, value=AnyValue(int_value=value))
        case float():
            return KeyValue(key=key, value=AnyValue(double_value=value))
        case str():
            return KeyValue(key=key, value=AnyValue(string_value=value))


def _server_span_request(service: str, start_ns: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(_attribute("service.name", service))
    resource_spans.resource.attributes.append(_attribute("host.name", "harness-host"))
    span = resource_spans.scope_spans.add().spans.add()
    # A trace id of its own: the session Jaeger is shared, and other tests use the W3C example id.
    span.trace_id = hashlib.blake2b(service.encode(), digest_size=16).digest()
    span.span_id = bytes.fromhex("b7ad6b7169203331")
    span.name = "GET /orders/{id}"
    span.kind = Span.SPAN_KIND_SERVER
    span.start_time_unix_nano = start_ns
    span.end_time_unix_nano = start_ns + SPAN_DURATION_NS
    span.attributes.extend(
        [
            _attribute("http.method", "GET"),
            _attribute("http.status_code", 500),
            _attribute("cache.hit", False),
            _attribute("load.ratio", 0.25),
        ]
    )
    event = span.events.add()
    event.name = "cache miss"
    event.time_unix_nano = start_ns + 1_000_000
    event.attributes.append(_attribute("cache.key", "order:42"))
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = "database unavailable"
    return request


def _post_protobuf(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-protobuf"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


@pytest.mark.integration
def test_jaeger_round_trip_keeps_every_span_field(jaeger: Jaeger, service_name: str) -> None:
    start_ns = time.time_ns() - 5_000_000_000
    request = _server_span_request(service_name, start_ns)

    assert _post_protobuf(jaeger.otlp_http_endpoint, request.SerializeToString()) == 200

    [span] = jaeger.query.wait_for_spans(service_name, 1)
    assert span.service_name == service_name
    assert span.trace_id == hashlib.blake2b(service_name.encode(), digest_size=16).hexdigest()
    assert span.span_id == "b7ad6b7169203331"
    assert span.operation_name == "GET /orders/{id}"
    assert span.start_time_us == start_ns // 1_000
    assert span.duration_us == SPAN_DURATION_NS // 1_000
    assert span.kind == "server"
    assert span.tags["error"] is True
    assert span.tags["otel.status_code"] == "ERROR"
    assert span.tags["otel.status_description"] == "database unavailable"
    assert span.tags["http.method"] == "GET"
    assert span.tags["http.status_code"] == 500
    assert span.tags["cache.hit"] is False
    assert span.tags["load.ratio"] == 0.25
    assert span.process_tags["host.name"] == "harness-host"
    [log] = span.logs
    assert log.timestamp_us == (start_ns + 1_000_000) // 1_000
    assert log.fields == {"event": "cache miss", "cache.key": "order:42"}

    assert jaeger.query.services().count(service_name) == 1
    assert jaeger.query.operations(service_name) == ["GET /orders/{id}"]
    trace = jaeger.query.trace(span.trace_id)
    assert trace is not None
    assert [stored.span_id for stored in trace.spans] == [span.span_id]


@pytest.mark.integration
def test_jaeger_query_reports_unknown_trace_as_none(jaeger: Jaeger) -> None:
    assert jaeger.query.trace("00000000000000000000000000c0ffee") is None


@pytest.mark.integration
def test_wait_for_spans_names_what_it_found_when_it_times_out(
    jaeger: Jaeger, service_name: str
) -> None:
    with pytest.raises(
        HarnessError, match=rf"stored 0 of 1 expected spans of service '{service_name}'"
    ):
        jaeger.query.wait_for_spans(service_name, 1, timeout=0.3)


@pytest.mark.integration
def test_jaeger_outage_and_restart_on_the_same_ports(jaeger_factory: JaegerFactory) -> None:
    instance = jaeger_factory()
    endpoint = instance.otlp_http_endpoint

    instance.stop()
    with pytest.raises(urllib.error.URLError) as refused:
        _post_protobuf(endpoint, b"")
    assert isinstance(refused.value.reason, ConnectionRefusedError)

    instance.start()
    assert instance.otlp_http_endpoint == endpoint
    assert _post_protobuf(endpoint, b"") == 200


@pytest.mark.integration
def test_jaeger_runs_without_the_callers_otel_environment(
    jaeger_factory: JaegerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A collector reading this would export its own telemetry to a dead endpoint and log errors.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "leaked-service")
    instance = jaeger_factory()

    assert "OTEL_" not in Path(f"/proc/{instance.pid}/environ").read_text()


def test_missing_jaeger_binary_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JAEGER_BIN", raising=False)
    monkeypatch.setenv("SIDECAR_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(HarnessError, match=r"Jaeger binary not found at .*scripts/build-jaeger"):
        find_jaeger_binary()

    not_executable = tmp_path / "jaeger"
    not_executable.write_text("")
    monkeypatch.setenv("JAEGER_BIN", str(not_executable))
    with pytest.raises(HarnessError, match=r"not an executable file.*JAEGER_BIN"):
        find_jaeger_binary()


@pytest.mark.integration
def test_redis_outage_refuses_connections_and_restart_keeps_the_port(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    assert client.ping() is True
    port = redis_server.port
    with pytest.raises(HarnessError, match="already running"):
        redis_server.start()

    redis_server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(redis.ConnectionError):
        client.ping()

    redis_server.start()
    assert redis_server.port == port
    assert redis_server.url == f"redis://127.0.0.1:{port}/0"
    assert client.ping() is True  # the same client reconnects


@pytest.mark.integration
def test_redis_kill_loses_unpersisted_data_and_aof_survives_it(
    redis_server_factory: RedisServerFactory,
) -> None:
    volatile = redis_server_factory()
    durable = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    for server in (volatile, durable):
        server.client().set("key", "value")
        server.kill()
        server.start()

    assert volatile.client().get("key") is None
    assert durable.client().get("key") == b"value"


@pytest.mark.integration
def test_redis_password_is_required_and_in_the_url(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(password="s3cret")

    assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
    assert server.client().ping() is True
    with pytest.raises(redis.AuthenticationError):
        server.client(password=None).ping()
    with redis.Redis.from_url(server.url) as from_url:
        assert from_url.ping() is True


@pytest.mark.integration
def test_redis_cluster_spreads_keys_over_all_masters(redis_cluster: RedisClusterFactory) -> None:
    cluster = redis_cluster()
    client = cluster.client(decode_responses=True)

    keys = [f"key-{index}" for index in range(30)]
    for key in keys:
        client.set(key, key.upper())

    assert [client.get(key) for key in keys] == [key.upper() for key in keys]
    per_node = [node.client().dbsize() for node in cluster.nodes]
    assert len(per_node) == 3
    assert all(count > 0 for count in per_node)
    assert sum(per_node) == len(keys)


def test_free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ephemeral_low, ephemeral_high = ephemeral_port_range()
    ports = [free_port() for _ in range(50)]
    try:
        assert len(set(ports)) == len(ports)
        assert set(ports) <= claimed_ports()
        for port in ports:
            assert not ephemeral_low <= port <= ephemeral_high
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", port))
    finally:
        for port in ports:
            release_port(port)
    assert not set(ports) & claimed_ports()


def test_a_claimed_port_is_not_handed_to_another_process() -> None:
    port = free_port()
    try_lock = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(PORT_LOCK_DIR / f'{port}.lock')!r}, os.O_RDWR)\n"
        "try:\n"
        "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(7)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", try_lock], check=False, timeout=30)
        assert done.returncode == 7
    finally:
        release_port(port)
    released = subprocess.run([sys.executable, "-c", try_lock], check=False, timeout=30)
    assert released.returncode == 0


@pytest.mark.integration
def test_redis_start_failure_shows_the_server_log(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra_args=["--no-such-directive", "yes"])
    try:
        with pytest.raises(HarnessError, match=r"(?s)exited with code 1.*no-such-directive"):
            server.start()
    finally:
        server.close()


@pytest.mark.integration
def test_redis_first_start_moves_off_a_port_taken_meanwhile_but_restart_does_not(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    taken = server.port
    try:
        with _listening_on(taken):
            server.start()
        assert server.port != taken
        assert server.ping()

        server.stop()
        with _listening_on(server.port), pytest.raises(HarnessError, match="in use"):
            server.start()
    finally:
        server.close()


@pytest.mark.integration
def test_jaeger_first_start_moves_off_a_port_taken_meanwhile(tmp_path: Path) -> None:
    instance = Jaeger(tmp_path)
    taken = instance.ports.query_http
    try:
        with _listening_on(taken):
            instance.start()
        assert instance.ports.query_http != taken
        assert instance.is_ready()
    finally:
        instance.close()


@contextlib.contextmanager
def _listening_on(port: int) -> Iterator[None]:
    """Another program holding `port`, as a port taken between claim and bind would be."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        yield


def test_managed_process_reports_exit_codes_and_keeps_runs_apart_in_its_log(
    tmp_path: Path,
) -> None:
    argv = ["sh", "-c", 'echo "pid $$"; exec sleep 30']
    process = ManagedProcess("sleeper", argv, tmp_path / "sleeper.log")

    def printed_its_pid() -> bool:
        return re.search(r"pid \d+", process.output_since_start()) is not None

    process.start()
    eventually_sync(printed_its_pid, timeout=5, what="first run")
    assert process.stop() == -signal.SIGTERM
    first_pid = process.pid

    process.start()
    eventually_sync(printed_its_pid, timeout=5, what="second run")
    assert process.output_since_start() == f"pid {process.pid}\n"
    assert f"pid {first_pid}\n" in process.log_tail()
    assert process.kill() == -signal.SIGKILL
    assert process.returncode == -signal.SIGKILL
    assert not process.running


async def test_eventually_returns_the_first_truthy_value_and_fails_at_its_deadline() -> None:
    calls = iter([0, [], {"found": 1}])
    assert await eventually(lambda: next(calls), timeout=5, interval=0.001) == {"found": 1}
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for nothing"):
        await eventually(lambda: False, timeout=0.05, what="nothing")
    assert time.monotonic() - started < 2


def test_eventually_sync_stops_early_when_told_why() -> None:
    with pytest.raises(AssertionError, match="gave up waiting for the server: it exited"):
        eventually_sync(lambda: False, timeout=30, what="the server", abort=lambda: "it exited")
