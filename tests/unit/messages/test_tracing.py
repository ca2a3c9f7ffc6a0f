"""W3C traceparent handling and the spans made for publishes and delivery attempts."""

from __future__ import annotations

from agent.messages.codec import Envelope
from agent.messages.subscribe.model import Entry
from agent.messages.tracing import MessageTracer, TraceParent
from agent.spans.model import KIND_CONSUMER, KIND_PRODUCER, STATUS_ERROR, Span

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_parse_and_refusals() -> None:
    parsed = TraceParent.parse(PARENT)
    assert parsed is not None and str(parsed) == PARENT and parsed.flags == 1
    assert TraceParent.parse(PARENT.upper()) == parsed
    for bad in (None, "", "garbage", "01-" + PARENT[3:], PARENT[:-1]):
        assert TraceParent.parse(bad) is None
    assert TraceParent.parse(f"00-{'0' * 32}-b7ad6b7169203331-01") is None
    assert TraceParent.parse(f"00-0af7651916cd43dd8448eb211c80319c-{'0' * 16}-01") is None


def test_untraced_publishes_are_passed_through_untouched() -> None:
    emitted: list[Span] = []
    envelopes: list[Envelope] = [(None, 1, None, None), (None, 2, {"a": "b"}, None)]
    out, spans = MessageTracer(emitted.append).publishing("t", envelopes, None)
    assert out is envelopes and spans == []


def test_producer_span_per_traced_message_and_header_points_at_it() -> None:
    emitted: list[Span] = []
    tracer = MessageTracer(emitted.append)
    own = "00-11111111111111111111111111111111-2222222222222222-00"
    envelopes: list[Envelope] = [(None, 1, None, None), (None, 2, {"traceparent": own}, None)]
    out, spans = tracer.publishing("orders", envelopes, PARENT)
    tracer.published(spans, ["m1", "m2"], "accepted")
    assert [span.kind for span in emitted] == [KIND_PRODUCER, KIND_PRODUCER]
    first, second = emitted
    assert first.trace_id.hex() == PARENT.split("-")[1]  # from the HTTP header
    assert second.trace_id.hex() == "1" * 32  # the message's own header wins
    assert first.attributes["messaging.message.id"] == "m1"
    headers = out[0][2]
    assert headers is not None
    assert headers["traceparent"] == f"00-{first.trace_id.hex()}-{first.span_id.hex()}-01"


def test_without_own_spans_the_request_traceparent_is_still_kept() -> None:
    out, spans = MessageTracer(None).publishing("t", [(None, 1, None, None)], PARENT)
    assert spans == [] and out[0][2] == {"traceparent": PARENT}


def test_consumer_span_per_attempt_child_of_the_message_context() -> None:
    emitted: list[Span] = []
    message = {"id": "m1", "headers": {"traceparent": PARENT}}
    entry = Entry(b"1-0", message, attempt=2)
    span = MessageTracer(emitted.append).attempt("orders", entry)
    assert span.traceparent is not None and span.traceparent != PARENT
    span.end("retry", 503)
    (made,) = emitted
    assert made.kind == KIND_CONSUMER and made.parent_span_id.hex() == PARENT.split("-")[2]
    assert made.status_code == STATUS_ERROR
    assert made.attributes["messaging.delivery.attempt"] == 2
    assert made.attributes["http.response.status_code"] == 503
    assert (
        MessageTracer(emitted.append).attempt("o", Entry(b"1-0", {"id": "x"})).traceparent is None
    )
