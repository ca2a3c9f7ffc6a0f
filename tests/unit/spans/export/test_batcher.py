"""SpanBatcher: requests never exceed the byte limit, nothing is lost, marks add up, linger."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.spans.encode.resources import Resources, resource_key
from agent.spans.export.batcher import JsonEncoding, ProtobufEncoding, SpanBatcher, encoding_for
from agent.spans.model import Span

RESOURCES = Resources(service_name="fallback", attributes={"k8s.pod.name": "pod-1"})


def make_span(index: int, service: str | None, payload: int) -> Span:
    return Span(
        trace_id=(index + 1).to_bytes(16, "big"),
        span_id=(index + 1).to_bytes(8, "big"),
        name=f"op-{index}",
        start_ns=1_700_000_000_000_000_000 + index,
        end_ns=1_700_000_000_000_000_000 + index + 5_000,
        service_name=service,
        attributes={"blob": "x" * payload},
    )


spans_strategy = st.lists(
    st.tuples(st.sampled_from([None, "api", "worker", "db"]), st.integers(0, 3000)),
    min_size=1,
    max_size=120,
)


def batch_all(
    batcher: SpanBatcher[int], spans: list[Span], chunk: int = 7
) -> tuple[list[bytes], list[dict[int, int]], list[int]]:
    """Feed in chunks (one mark per chunk); returns (requests, marks, span counts)."""
    encoding = batcher.encoding
    for mark, start in enumerate(range(0, len(spans), chunk)):
        items = [(resource_key(s), encoding.encode(s)) for s in spans[start : start + chunk]]
        batcher.add_many(items, mark, now=float(mark))
    batches = batcher.take_ready(now=1e9, force=True)
    requests = [encoding.build(b.groups) for b in batches]
    return requests, [b.marks for b in batches], [b.span_count for b in batches]


@settings(max_examples=60, deadline=None)
@given(spans_strategy, st.integers(4_000, 40_000), st.integers(1, 50))
def test_protobuf_requests_stay_under_the_limit_and_keep_every_span(
    shape: list[tuple[str | None, int]], max_bytes: int, max_spans: int
) -> None:
    spans = [make_span(i, service, size) for i, (service, size) in enumerate(shape)]
    batcher: SpanBatcher[int] = SpanBatcher(ProtobufEncoding(RESOURCES), max_spans, max_bytes, 1.0)
    requests, marks, counts = batch_all(batcher, spans)
    names: list[str] = []
    for request, count in zip(requests, counts, strict=True):
        assert len(request) <= max_bytes
        decoded = ExportTraceServiceRequest.FromString(request)
        found = [s.name for rs in decoded.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert len(found) == count <= max_spans
        names += found
    assert sorted(names) == sorted(s.name for s in spans)
    credited: dict[int, int] = {}
    for batch_marks in marks:
        for mark, count in batch_marks.items():
            credited[mark] = credited.get(mark, 0) + count
    expected = {m: len(spans[m * 7 : m * 7 + 7]) for m in range((len(spans) + 6) // 7)}
    assert credited == expected


@settings(max_examples=40, deadline=None)
@given(spans_strategy, st.integers(4_000, 40_000))
def test_json_requests_stay_under_the_limit_and_parse(
    shape: list[tuple[str | None, int]], max_bytes: int
) -> None:
    spans = [make_span(i, service, size) for i, (service, size) in enumerate(shape)]
    batcher: SpanBatcher[int] = SpanBatcher(JsonEncoding(RESOURCES), 1000, max_bytes, 1.0)
    requests, _, counts = batch_all(batcher, spans)
    total = 0
    for request, count in zip(requests, counts, strict=True):
        assert len(request) <= max_bytes
        body = orjson.loads(request)
        found = [s for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
        assert len(found) == count
        total += count
    assert total == len(spans)


def test_resource_groups_carry_the_merged_service_name() -> None:
    batcher: SpanBatcher[int] = SpanBatcher(ProtobufEncoding(RESOURCES), 100, 1 << 20, 1.0)
    requests, _, _ = batch_all(batcher, [make_span(0, None, 1), make_span(1, "api", 1)])
    decoded = ExportTraceServiceRequest.FromString(requests[0])
    services = {
        attr.value.string_value
        for rs in decoded.resource_spans
        for attr in rs.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"fallback", "api"}


def test_a_span_too_large_for_any_request_does_not_fit_alone() -> None:
    batcher: SpanBatcher[int] = SpanBatcher(ProtobufEncoding(RESOURCES), 100, 5_000, 1.0)
    small, huge = make_span(0, None, 100), make_span(1, None, 6_000)
    encode = batcher.encoding.encode
    assert batcher.fits_alone(resource_key(small), encode(small))
    assert not batcher.fits_alone(resource_key(huge), encode(huge))


def test_linger_closes_a_partial_batch_only_when_it_has_waited() -> None:
    batcher: SpanBatcher[str] = SpanBatcher(
        encoding_for("http/protobuf", RESOURCES), 100, 1 << 20, 0.5
    )
    assert batcher.next_deadline() is None
    span = make_span(0, None, 1)
    batcher.add_many([(resource_key(span), batcher.encoding.encode(span))], "m", now=10.0)
    assert batcher.next_deadline() == 10.5
    assert batcher.take_ready(now=10.4) == []
    [batch] = batcher.take_ready(now=10.5)
    assert batch.marks == {"m": 1} and batcher.pending_spans == 0


def test_max_spans_closes_a_batch_at_once() -> None:
    batcher: SpanBatcher[str] = SpanBatcher(ProtobufEncoding(RESOURCES), 3, 1 << 20, 60.0)
    spans = [make_span(i, None, 1) for i in range(7)]
    batcher.add_many([(resource_key(s), batcher.encoding.encode(s)) for s in spans], "m", 0.0)
    ready = batcher.take_ready(now=0.0)
    assert [len(b) for b in ready] == [3, 3]
    assert batcher.pending_spans == 1
    assert batcher.next_deadline() == 60.0


def test_flush_bytes_closes_early_but_a_span_up_to_the_hard_limit_still_fits() -> None:
    batcher: SpanBatcher[str] = SpanBatcher(
        ProtobufEncoding(RESOURCES), 100, 20_000, 60.0, flush_bytes=3_000
    )
    big = make_span(0, None, 10_000)
    small = [make_span(i, None, 1_000) for i in range(1, 5)]
    assert batcher.fits_alone(resource_key(big), batcher.encoding.encode(big))
    items = [(resource_key(s), batcher.encoding.encode(s)) for s in [big, *small]]
    batcher.add_many(items, "m", 0.0)
    sizes = [len(b) for b in batcher.take_ready(now=0.0, force=True)]
    assert sizes[0] == 1, "the big span reached flush_bytes on its own"
    assert sum(sizes) == 5 and max(sizes) <= 3
