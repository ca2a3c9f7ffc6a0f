from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from agent.spans.model import Span
from agent.spans.sampling import SAMPLERS, TraceIdRatioSampler, make_sampler


def span_with(trace_id: bytes, flags: int | None = None, parent: bytes = b"") -> Span:
    return Span(trace_id, b"\x01" * 8, "op", 1, 2, parent_span_id=parent, flags=flags)


@pytest.mark.parametrize("ratio", [0.0, 0.0001, 0.1, 0.25, 0.5, 0.999, 1.0])
def test_same_decisions_as_the_python_sdk(ratio: float) -> None:
    rng = random.Random(ratio)
    ours = TraceIdRatioSampler(ratio)
    sdk = TraceIdRatioBased(ratio)
    assert ours.bound == sdk.bound
    kept = 0
    for _ in range(5000):
        trace_id = rng.getrandbits(128)
        expected = sdk.should_sample(None, trace_id, "op").decision is Decision.RECORD_AND_SAMPLE
        assert ours(span_with(trace_id.to_bytes(16, "big"))) is expected
        kept += expected
    assert abs(kept / 5000 - ratio) < 0.05


def test_decision_at_the_bound_edges() -> None:
    sampler = TraceIdRatioSampler(0.5)
    just_below = (sampler.bound - 1).to_bytes(16, "big")
    at_bound = sampler.bound.to_bytes(16, "big")
    assert sampler.should_sample(just_below)
    assert not sampler.should_sample(at_bound)
    # Only the low 64 bits count, as in the SDK.
    assert sampler.should_sample(b"\xff" * 8 + just_below[8:])


def test_every_span_of_a_trace_goes_together() -> None:
    sampler = make_sampler("traceidratio", 0.3)
    rng = random.Random(3)
    for _ in range(200):
        trace_id = rng.randbytes(16)
        decisions = {sampler(span_with(trace_id, parent=rng.randbytes(8))) for _ in range(5)}
        assert len(decisions) == 1


def test_parent_based_honours_an_explicit_unsampled_flag() -> None:
    sampler = make_sampler("parentbased_always_on")
    trace_id = b"\x07" * 16
    assert sampler(span_with(trace_id, flags=None))
    assert sampler(span_with(trace_id, flags=0x01))
    assert sampler(span_with(trace_id, flags=0x101))
    assert not sampler(span_with(trace_id, flags=0x00))
    assert make_sampler("always_on")(span_with(trace_id, flags=0)) is True  # not parent-based


def test_parent_based_ratio_uses_the_trace_id_for_the_rest() -> None:
    rng = random.Random(9)
    plain, parent_based = (
        make_sampler("traceidratio", 0.5),
        make_sampler("parentbased_traceidratio", 0.5),
    )
    for _ in range(500):
        span = span_with(rng.randbytes(16), flags=0x01)
        assert parent_based(span) is plain(span)


def test_names() -> None:
    trace_id = b"\x09" * 16
    assert make_sampler("always_on")(span_with(trace_id))
    assert not make_sampler("always_off")(span_with(trace_id))
    assert not make_sampler("parentbased_always_off")(span_with(trace_id))
    assert set(SAMPLERS) >= {"always_on", "parentbased_traceidratio"}
    with pytest.raises(ValueError, match="jaeger_remote"):
        make_sampler("jaeger_remote")
    with pytest.raises(ValueError, match="ratio"):
        make_sampler("traceidratio", 1.5)
