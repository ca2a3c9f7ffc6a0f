"""Head sampling of spans read from logs, by OTEL_TRACES_SAMPLER name.

    keep = make_sampler("parentbased_traceidratio", 0.25)
    if keep(span): ...

`TraceIdRatioSampler` makes the same decision as OpenTelemetry Python's
`TraceIdRatioBased`: keep when the low 64 bits of the trace ID (its last 8 bytes,
big-endian) are below `round(ratio * 2**64)`. It depends on the trace ID only, so
every span of a trace gets the same answer, whichever file or agent reads it, and so
does an SDK configured with the same ratio.

Parent-based, for spans read from logs: the application already made a sampling
decision when it recorded the span, and passed it to children in the W3C `sampled`
flag. Where a record carries trace flags (`Span.flags` is not None: OTLP/JSON, Go's
stdouttrace, span-json `flags`) and the sampled bit is 0, the span is dropped, as the
application's own exporter would have. Otherwise the root sampler decides from the
trace ID — which, being deterministic per trace, keeps parents and children together
exactly as a parent-based SDK would. `parentbased_always_on` therefore equals
`always_on` for records without flags.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.config.tree import SAMPLER_NAMES
from agent.spans.model import Span

SAMPLED_FLAG = 0x01
TRACE_ID_LIMIT = (1 << 64) - 1
# The names are config's to know (config validation must not import this module).
SAMPLERS = SAMPLER_NAMES

SpanSampler = Callable[[Span], bool]
TraceFilter = Callable[[bytes], bool]


class TraceIdRatioSampler:
    def __init__(self, ratio: float) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"sampling ratio must be within [0, 1], got {ratio}")
        self.ratio = ratio
        self.bound = round(ratio * (TRACE_ID_LIMIT + 1))

    def should_sample(self, trace_id: bytes) -> bool:
        return int.from_bytes(trace_id[-8:], "big") < self.bound

    def __call__(self, span: Span) -> bool:
        return int.from_bytes(span.trace_id[-8:], "big") < self.bound


def _always_on(span: Span) -> bool:
    return True


def _always_off(span: Span) -> bool:
    return False


class ParentBasedSampler:
    """Honours an explicit "not sampled" trace flag, else asks the root sampler."""

    def __init__(self, root: SpanSampler) -> None:
        self.root = root

    def __call__(self, span: Span) -> bool:
        if span.flags is not None and not span.flags & SAMPLED_FLAG:
            return False
        return self.root(span)


def make_sampler(name: str, arg: float = 1.0) -> SpanSampler:
    """A span filter for an OTEL_TRACES_SAMPLER value; ValueError for unknown names."""
    base = name.removeprefix("parentbased_")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    root: SpanSampler
    if base == "always_on":
        root = _always_on
    elif base == "always_off":
        root = _always_off
    else:
        root = TraceIdRatioSampler(arg)
    return ParentBasedSampler(root) if name.startswith("parentbased_") else root


def _keep_no_trace(trace_id: bytes) -> bool:
    return False


def trace_filter_of(sampler: SpanSampler | None) -> TraceFilter | None:
    """The decision `sampler` (None: keep all) makes for spans without trace flags, as a
    function of the trace ID alone, for callers that have no `Span`; None when it keeps every
    such span. ValueError for a sampler `make_sampler` did not make."""
    if isinstance(sampler, ParentBasedSampler):
        sampler = sampler.root  # it only differs from its root for spans with flags
    if sampler is None or sampler is _always_on:
        return None
    if sampler is _always_off:
        return _keep_no_trace
    if isinstance(sampler, TraceIdRatioSampler):
        return sampler.should_sample
    raise ValueError(f"no trace-ID decision is known for sampler {sampler!r}")
