"""The span model every input format decodes into and every encoder reads.

A `Span` is a finished span that is already valid for Jaeger: the decoders in
`agent.spans.decode.registry` only ever hand out spans that passed `agent.spans.validate`;
anything else becomes a `DeadLetter` with a stable `reason` slug.

Invariants a decoded `Span` keeps (the encoders rely on them):

- `trace_id` is 16 bytes, `span_id` 8 bytes, neither all zero; `parent_span_id` is
  `b""` (a root span) or 8 non-zero bytes.
- `0 < start_ns <= end_ns < 2**63` and `end_ns - start_ns <= MAX_DURATION_NS`.
- `kind` is an OTLP SpanKind (0..5), `status_code` an OTLP status code (0..2).
- Strings are valid Unicode without lone surrogates, so they encode to UTF-8.
- Attribute values are `AttrValue`s nested at most `MAX_ATTR_DEPTH` deep. Integers
  outside the signed 64-bit range are allowed: OTLP cannot carry them as ints, so
  the encoders send their exact decimal string instead.
- `service_name` is `None` when the record named no service; the resource merge in
  `agent.spans.encode.protobuf` then supplies the configured default. `resource` holds the
  record's other resource attributes and never `service.name`.
- Spans decoded from one record may share the same `resource` dict: treat spans as
  read-only once decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

AttrValue = str | bool | int | float | bytes | list["AttrValue"] | dict[str, "AttrValue"] | None
Attributes = dict[str, AttrValue]

# OTLP SpanKind values (opentelemetry.proto.trace.v1.Span.SpanKind).
KIND_UNSPECIFIED: Final = 0
KIND_INTERNAL: Final = 1
KIND_SERVER: Final = 2
KIND_CLIENT: Final = 3
KIND_PRODUCER: Final = 4
KIND_CONSUMER: Final = 5

# OTLP Status.StatusCode values.
STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2

# The attribute a decoder sets on spans it had to close itself (JobFirst spans whose
# end line never came, or that were pushed out by the open-span cap).
INCOMPLETE_ATTRIBUTE: Final = "sidecar.incomplete"


@dataclass(slots=True)
class SpanEvent:
    time_ns: int
    name: str
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class SpanLink:
    trace_id: bytes
    span_id: bytes
    trace_state: str = ""
    attributes: Attributes = field(default_factory=dict)
    flags: int | None = None


@dataclass(slots=True)
class Span:
    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: bytes = b""
    kind: int = KIND_INTERNAL
    attributes: Attributes = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
    status_code: int = STATUS_UNSET
    status_message: str = ""
    trace_state: str = ""
    service_name: str | None = None
    resource: Attributes = field(default_factory=dict)
    scope_name: str = ""
    scope_version: str = ""
    # OTLP Span.flags: W3C trace flags in bits 0-7, parent remoteness in bits 8-9.
    # None when the source did not say; the encoders then leave the field out.
    flags: int | None = None


@dataclass(slots=True)
class DeadLetter:
    """A record that could not become a span.

    `reason` is a short stable slug, safe as a metric label (see docs/span-format.md
    for the list); `detail` is for humans; `raw` is the input record as read (all the
    lines of a multi-line object, joined with newlines).
    """

    reason: str
    detail: str
    raw: bytes


@dataclass(slots=True)
class DecodeResult:
    """What one `feed`/`expire` call produced.

    `skipped` counts lines that were not span records (other log lines, blank lines)
    and were passed over on purpose. `incomplete` counts spans in `spans` that the
    decoder closed itself (marked with `INCOMPLETE_ATTRIBUTE`); `evicted` counts the
    subset of those forced out by the open-span cap rather than the orphan timeout.
    `fallbacks` counts records the direct path (`Decoder.feed_direct`) handed to the general
    path: they are decoded all the same, only slower.
    """

    spans: list[Span] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0
    incomplete: int = 0
    evicted: int = 0
    fallbacks: int = 0

    def merge(self, other: DecodeResult) -> None:
        self.spans.extend(other.spans)
        self.merge_counts(other)

    def merge_counts(self, other: DecodeResult) -> None:
        """`merge` but for the spans, which the caller takes elsewhere."""
        self.dead.extend(other.dead)
        self.skipped += other.skipped
        self.incomplete += other.incomplete
        self.evicted += other.evicted
        self.fallbacks += other.fallbacks
