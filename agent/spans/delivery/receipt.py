"""What a network sender waits on: its spans settled, one by one, by the span sender.

Spans read from files are settled against delivery marks that move a checkpoint; spans that
arrive in a request (`agent.receivers`) have no file to checkpoint: the request itself waits
until every one of its spans is safe (sent, fsync'd in the disk queue, or dead-lettered) and
only then answers. A `Receipt` is that wait. It is hashable by identity, so it rides in a
batch's marks beside the file marks.

`hand_over` is the way in for such spans: decoded ones take `Outbound.prepare` (sampler,
resource merge, encoding) like tailed ones; a receiver may also hand over spans it sampled and
encoded itself under `pass_through_rules` (OTLP/protobuf kept as the SDK wrote it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from agent.config.tree import Config
from agent.spans.export.outbound import Outbound, sampler_for
from agent.spans.model import DecodeResult, Span
from agent.spans.sampling import TraceFilter, trace_filter_of
from agent.spans.types import EncodedSpan, ResourceKey


class Receipt:
    __slots__ = ("_done", "outstanding", "spans")

    def __init__(self, spans: int) -> None:
        self.spans = spans
        self.outstanding = spans
        self._done = asyncio.Event()
        if spans == 0:
            self._done.set()

    def settle(self, count: int) -> None:
        self.outstanding -= count
        if self.outstanding <= 0:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> None:
        """Returns once every span is safe."""
        await self._done.wait()


class PassThroughRules(NamedTuple):
    """What a receiver must apply to spans it hands over already encoded: the sampler's
    decision by trace ID (None keeps all), and the largest framed span a request can hold, per
    resource (larger ones are handed over decoded, to be dead-lettered)."""

    keep_trace: TraceFilter | None
    span_limit: Callable[[ResourceKey], int]


def pass_through_rules(config: Config, outbound: Outbound[Any]) -> PassThroughRules | None:
    """None when received spans cannot skip decoding: JSON export, or a sampler that needs
    the whole span."""
    if config.export.protocol != "http/protobuf":
        return None
    try:
        keep_trace = trace_filter_of(sampler_for(config.spans))
    except ValueError:
        return None
    return PassThroughRules(keep_trace, outbound.span_limit)


async def hand_over(
    outbound: Outbound[Any],
    spans: list[Span],
    source: str,
    encoded: Sequence[EncodedSpan] = (),
    *,
    sampled_out: int = 0,
) -> Receipt:
    """Batch received spans under one receipt: decoded `spans`, and `encoded` ones (of which
    the receiver's sampling dropped `sampled_out` more). The open batch is flushed at once:
    the sender already batched them, and it waits for the answer."""
    kept = await outbound.prepare(DecodeResult(spans=spans), source) if spans else []
    if encoded or sampled_out:
        outbound.count_encoded_elsewhere(len(encoded) + sampled_out, sampled_out)
        kept += encoded
    receipt = Receipt(len(kept))
    if kept:
        loop = asyncio.get_running_loop()
        outbound.add(kept, receipt, loop.time())
        await outbound.submit_ready(loop.time(), force=True)
    return receipt
