"""Accumulates encoded spans into export requests by count, bytes and linger. No I/O.

Each span is encoded once (`Encoding.encode`; for protobuf already framed as its ScopeSpans
holds it) and joins its resource's group in the open batch. The batch's size is kept as an
upper bound of the request it will become: every span's exact bytes (JSON: plus a comma), and
per resource group its headers and the widest framing they can need (no per-span size
arithmetic on the hot path). A batch closes *before* a span would push that bound over
`max_bytes`, so a request never exceeds the limit and never has to be split after the fact.
A span too large for any request on its own is refused (`fits_alone`); the caller
dead-letters it.

Every batch remembers how many of its spans came from each delivery mark (`marks`), so the
sender's settlement of a request can be passed back to the file trackers in one step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Final, Generic, Protocol, TypeVar

from agent.spans.encode.protobuf import (
    build_request_framed,
    encode_span,
    span_body,
    span_field,
)
from agent.spans.encode.protojson import build_request_json, encode_span_json, request_size_json
from agent.spans.encode.resources import Resources
from agent.spans.model import Span
from agent.spans.types import ResourceKey

M = TypeVar("M", bound=Hashable)
# Two length varints per group can grow from 1 to 5 bytes as a group fills: 8 covers both.
_GROUP_FRAMING_SLACK: Final = 8
_JSON_EMPTY_REQUEST: Final = len(b'{"resourceSpans":[]}')
_GROUP_COST_CACHE_LIMIT: Final = 1024


class Encoding(Protocol):
    json: bool

    span_overhead: int
    """Most bytes a span adds beyond its encoding (JSON: the comma)."""

    def encode(self, span: Span) -> bytes: ...

    def span_bytes(self, encoded: bytes) -> bytes:
        """The span's own message or object, without framing (for dead letters)."""
        ...

    def group_cost(self, key: ResourceKey) -> int: ...

    @property
    def base_cost(self) -> int: ...

    def build(self, groups: Mapping[ResourceKey, Sequence[bytes]]) -> bytes: ...


class _CostCache:
    def __init__(self, compute: Callable[[ResourceKey], int]) -> None:
        self._compute = compute
        self._costs: dict[ResourceKey, int] = {}

    def __call__(self, key: ResourceKey) -> int:
        cost = self._costs.get(key)
        if cost is None:
            if len(self._costs) >= _GROUP_COST_CACHE_LIMIT:
                self._costs.clear()  # unbounded resource sets must not grow memory
            cost = self._costs[key] = self._compute(key)
        return cost


class ProtobufEncoding:
    """OTLP/protobuf (`http/protobuf`): see `agent.spans.encode.protobuf`. Spans are held framed
    (`span_field`), so their sizes are exact and a request is one join."""

    json = False
    base_cost = 0
    span_overhead = 0

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.group_cost = _CostCache(
            lambda key: resources.group_size(key, 0) + _GROUP_FRAMING_SLACK
        )

    @staticmethod
    def encode(span: Span) -> bytes:
        return span_field(encode_span(span))

    @staticmethod
    def span_bytes(encoded: bytes) -> bytes:
        return span_body(encoded)

    def build(self, groups: Mapping[ResourceKey, Sequence[bytes]]) -> bytes:
        return build_request_framed(groups, self.resources)


class JsonEncoding:
    """OTLP/JSON (`http/json`): see `agent.spans.encode.protojson`."""

    json = True
    base_cost = _JSON_EMPTY_REQUEST
    span_overhead = 1  # the comma before it (one too many per group: an upper bound)

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.encode = encode_span_json
        # An empty group's exact size, plus the comma that separates it from the previous one.
        self.group_cost = _CostCache(
            lambda key: request_size_json({key: [b""]}, resources) - _JSON_EMPTY_REQUEST + 1
        )

    @staticmethod
    def span_bytes(encoded: bytes) -> bytes:
        return encoded

    def build(self, groups: Mapping[ResourceKey, Sequence[bytes]]) -> bytes:
        return build_request_json(groups, self.resources)


def encoding_for(protocol: str, resources: Resources) -> Encoding:
    return JsonEncoding(resources) if protocol == "http/json" else ProtobufEncoding(resources)


class SpanBatch(Generic[M]):
    """A request being filled: its spans by resource, and the marks they settle against.
    (Not a dataclass: mypyc cannot compile a generic one.)"""

    def __init__(self, size: int, opened_at: float) -> None:
        self.groups: dict[ResourceKey, list[bytes]] = {}
        self.span_count = 0
        self.size = size  # upper bound of the request's bytes
        self.opened_at = opened_at
        self.marks: dict[M, int] = {}

    def __len__(self) -> int:
        return self.span_count


class SpanBatcher(Generic[M]):
    """`max_bytes` is the hard request limit; a batch is also closed once it reaches
    `flush_bytes` (the batch size target, at most `max_bytes`)."""

    def __init__(
        self,
        encoding: Encoding,
        max_spans: int,
        max_bytes: int,
        linger: float,
        flush_bytes: int | None = None,
    ) -> None:
        if max_spans < 1 or max_bytes <= encoding.base_cost:
            raise ValueError("max_spans must be >= 1 and max_bytes larger than an empty request")
        self.encoding = encoding
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.flush_bytes = min(flush_bytes or max_bytes, max_bytes)
        self.linger = linger
        self._open: SpanBatch[M] = self._new_batch(0.0)
        self._ready: list[SpanBatch[M]] = []

    def _new_batch(self, now: float) -> SpanBatch[M]:
        return SpanBatch(size=self.encoding.base_cost, opened_at=now)

    def span_limit(self, key: ResourceKey) -> int:
        """The largest span body of this resource that a request can hold on its own."""
        encoding = self.encoding
        return (
            self.max_bytes - encoding.base_cost - encoding.group_cost(key) - encoding.span_overhead
        )

    def fits_alone(self, key: ResourceKey, body: bytes) -> bool:
        return len(body) <= self.span_limit(key)

    def add_many(self, spans: Sequence[tuple[ResourceKey, bytes]], mark: M, now: float) -> None:
        """Add encoded spans (each must `fits_alone`) that all settle against `mark`."""
        batch = self._open
        if not batch.span_count:
            batch.opened_at = now
        overhead, group_cost = self.encoding.span_overhead, self.encoding.group_cost
        max_bytes, max_spans, flush_bytes = self.max_bytes, self.max_spans, self.flush_bytes
        # The open batch's figures live in locals for the loop (it runs for every span); spans
        # come in runs of one resource, so the group is looked up only when the key changes.
        groups, size, count = batch.groups, batch.size, batch.span_count
        counted = 0  # spans of this call already in `batch`, not yet credited to `mark`
        last_key: ResourceKey | None = None
        group: list[bytes] | None = None
        for key, body in spans:
            cost = len(body) + overhead
            if key is not last_key:
                last_key, group = key, groups.get(key)
            if group is None:
                cost += group_cost(key)
            if size + cost > max_bytes or count >= max_spans or size >= flush_bytes:
                batch.size, batch.span_count = size, count
                self._credit(batch, mark, counted)
                batch = self._close_open(now)
                groups, size, count, counted = batch.groups, batch.size, 0, 0
                group, cost = None, len(body) + overhead + group_cost(key)
            if group is None:
                group = groups[key] = []
            group.append(body)
            size += cost
            count += 1
            counted += 1
        batch.size, batch.span_count = size, count
        self._credit(batch, mark, counted)
        if count >= max_spans or size >= flush_bytes:
            self._close_open(now)

    @staticmethod
    def _credit(batch: SpanBatch[M], mark: M, count: int) -> None:
        if count:
            batch.marks[mark] = batch.marks.get(mark, 0) + count

    def _close_open(self, now: float) -> SpanBatch[M]:
        if self._open.span_count:
            self._ready.append(self._open)
        self._open = self._new_batch(now)
        return self._open

    def take_ready(self, now: float, *, force: bool = False) -> list[SpanBatch[M]]:
        """Batches that are full or have lingered long enough (all of them when `force`)."""
        if self._open.span_count and (force or now - self._open.opened_at >= self.linger):
            self._close_open(now)
        ready, self._ready = self._ready, []
        return ready

    def next_deadline(self) -> float | None:
        """When the open batch's linger runs out (None when nothing is waiting)."""
        if self._ready:
            return 0.0
        if self._open.span_count:
            return self._open.opened_at + self.linger
        return None

    @property
    def pending_spans(self) -> int:
        return self._open.span_count + sum(batch.span_count for batch in self._ready)
