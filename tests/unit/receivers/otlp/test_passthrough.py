"""The pass-through fast path is held equal to the general path (decode to the span model,
then encode): same spans in the same resource groups, same rejections with the same
messages, same sampling decisions."""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.receivers.otlp.decode import Decoded, decode_protobuf
from agent.receivers.otlp.passthrough import pass_through
from agent.spans.delivery.receipt import PassThroughRules
from agent.spans.encode.protobuf import span_body
from agent.spans.encode.resources import Resources, resource_key
from agent.spans.export.batcher import ProtobufEncoding
from agent.spans.sampling import TraceIdRatioSampler
from tests.unit.receivers.otlp.test_decode import START, proto_span, request_of

KEEP_ALL = PassThroughRules(None, lambda key: 1 << 30)


def general(body: bytes) -> list[tuple[object, dict[str, object]]]:
    encoding = ProtobufEncoding(Resources())
    return [
        (resource_key(span), as_dict(encoding.encode(span))) for span in decode_protobuf(body).spans
    ]


def fast(decoded: Decoded) -> list[tuple[object, dict[str, object]]]:
    encoding = ProtobufEncoding(Resources())
    slow = [(resource_key(span), as_dict(encoding.encode(span))) for span in decoded.spans]
    return slow + [(key, as_dict(framed)) for key, framed in decoded.encoded]


def as_dict(framed: bytes) -> dict[str, object]:
    return dict(MessageToDict(Span.FromString(span_body(framed))))


def mixed_request() -> bytes:
    request = request_of(
        proto_span(0),
        proto_span(1, parent_span_id=bytes(8), flags=0x100),
        proto_span(2, parent_span_id=b"", flags=0, attributes=[], events=[], links=[]),
        proto_span(3, trace_id=b"\x01" * 15),
        proto_span(4, span_id=bytes(8)),
        proto_span(5, parent_span_id=b"\x01\x02"),
        proto_span(6, end_time_unix_nano=START),
        proto_span(7, name=""),
        proto_span(8, kind=9),
        proto_span(9, events=[Span.Event(time_unix_nano=0, name="e")]),
        proto_span(10, links=[Span.Link(trace_id=bytes(16), span_id=b"\x01" * 8)]),
        proto_span(11, end_time_unix_nano=START + 8 * 24 * 3600 * 10**9),
    )
    other = request_of(proto_span(20), proto_span(21), service="other")
    request.resource_spans.extend(other.resource_spans)
    return bytes(request.SerializeToString())


def test_same_spans_groups_and_rejections_as_the_general_path() -> None:
    body = mixed_request()
    decoded = pass_through(body, KEEP_ALL)
    reference = decode_protobuf(body)
    assert fast(decoded) == general(body)
    assert decoded.rejected == reference.rejected
    assert decoded.examples == reference.examples
    assert decoded.encoded, "the valid spans took the fast path"
    assert len(decoded.encoded) == 5 and decoded.sampled_out == 0


def test_the_root_sampler_decides_by_trace_id() -> None:
    sampler = TraceIdRatioSampler(0.5)
    spans = [
        proto_span(i, trace_id=(i * 0x9E3779B97F4A7C15 % 2**128).to_bytes(16, "big"))
        for i in range(1, 200)
    ]
    body = bytes(request_of(*spans).SerializeToString())
    decoded = pass_through(body, PassThroughRules(sampler.should_sample, lambda key: 1 << 30))
    expected = [span for span in spans if sampler.should_sample(span.trace_id)]
    assert len(decoded.encoded) == len(expected)
    assert decoded.sampled_out == len(spans) - len(expected)
    assert 0 < len(expected) < len(spans)
    kept = [Span.FromString(span_body(framed)).trace_id for _, framed in decoded.encoded]
    assert kept == [span.trace_id for span in expected]


def test_spans_too_large_for_a_request_take_the_general_path() -> None:
    body = bytes(request_of(proto_span(0), proto_span(1, name="x" * 5000)).SerializeToString())
    decoded = pass_through(body, PassThroughRules(None, lambda key: 1000))
    assert [span.name for span in decoded.spans] == ["x" * 5000]
    assert len(decoded.encoded) == 1


def test_empty_request() -> None:
    decoded = pass_through(ExportTraceServiceRequest().SerializeToString(), KEEP_ALL)
    assert (decoded.spans, decoded.encoded, decoded.rejected_count) == ([], [], 0)
