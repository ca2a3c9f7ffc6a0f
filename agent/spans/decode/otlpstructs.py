"""OTLP/JSON as msgspec Structs, for the direct path of `otlp-json`: one C-level pass from a
line's bytes to typed objects, instead of dicts walked key by key in Python.

Every Struct forbids unknown fields and every field has the type proto3 JSON writes, so a
record in any other shape (snake_case keys, older names, enum names, base64 IDs, array or map
values) fails to decode here and takes the general path (`agent.spans.decode.otlpjson`),
which reads it or says why not. Integers that proto3 JSON writes as strings (times, intValue)
are typed `int | str`; the direct path converts the strings.

What repeats from line to line is left undecoded (`msgspec.Raw`, the value's JSON bytes,
checked to be JSON): a ResourceSpans' resource and a ScopeSpans' scope. The direct path
looks their meaning up by those bytes, and decodes them with the Structs here
(`decode_resource`, `decode_scope`) only the first time.
None of the Structs takes part in a reference cycle, so none is tracked by the garbage
collector (`gc=False`): a line makes a dozen of them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# orjson reads an integer below -2**63 as a float, which the dict walk refuses; msgspec would
# read it as an int, so the Structs bound it (out of range fails the decode: the dict path).
Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Int64 = Int | str


class AnyValue(msgspec.Struct, forbid_unknown_fields=True, gc=False, frozen=True):
    """The scalars only: an array, map or bytes value fails the decode, and its line takes
    the general path (the direct path writes scalar attributes only). Four fields: each
    lookup by a KeyValue hashes and compares them all."""

    stringValue: str | None = None
    intValue: Int64 | None = None
    boolValue: bool | None = None
    doubleValue: float | None = None


class KeyValue(msgspec.Struct, forbid_unknown_fields=True, gc=False, frozen=True):
    """Frozen: hashable, so the direct path can look a span's attributes up by their Struct."""

    key: str
    value: AnyValue


# The JSON `null`: what a Raw field holds when its key is absent, as when it is null.
NULL = msgspec.Raw(b"null")


class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timeUnixNano: Int64 | None = None
    name: str | None = None
    attributes: list[KeyValue] | None = None
    droppedAttributesCount: Int = 0


class Status(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    code: Int | None = None
    message: str | None = None


class Span(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    traceId: str | None = None
    spanId: str | None = None
    parentSpanId: str | None = None
    name: str | None = None
    kind: Int | None = None
    startTimeUnixNano: Int64 | None = None
    endTimeUnixNano: Int64 | None = None
    attributes: list[KeyValue] | None = None
    events: list[Event] | None = None
    status: Status | None = None
    flags: Int | None = None
    traceState: str | None = None
    links: list[Any] | None = None
    droppedAttributesCount: Int = 0
    droppedEventsCount: Int = 0
    droppedLinksCount: Int = 0


class Scope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    name: str | None = None
    version: str | None = None
    attributes: list[KeyValue] | None = None
    droppedAttributesCount: Int = 0


class ScopeSpans(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    scope: msgspec.Raw = NULL  # a Scope or null
    spans: list[Span] | None = None
    schemaUrl: str | None = None


class Resource(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    attributes: list[KeyValue] | None = None
    droppedAttributesCount: Int = 0


class ResourceSpans(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    resource: msgspec.Raw = NULL  # a Resource or null
    scopeSpans: list[ScopeSpans] | None = None
    schemaUrl: str | None = None


class Request(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    resourceSpans: list[ResourceSpans] | None = None


decode_request = msgspec.json.Decoder(Request).decode
decode_resource_spans = msgspec.json.Decoder(ResourceSpans).decode
decode_resource = msgspec.json.Decoder(Resource | None).decode
decode_scope = msgspec.json.Decoder(Scope | None).decode
DecodeError = msgspec.DecodeError
