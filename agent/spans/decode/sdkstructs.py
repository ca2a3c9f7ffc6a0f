"""Go's stdouttrace spans (`tracetest.SpanStub`) as msgspec Structs, for the direct path of
`otel-sdk`: one C-level pass from a line's bytes to typed objects, instead of a dict walked
key by key (`direct_sdk.go_span` walks the dict; `direct_sdk.go_line` walks these).

The Structs read what `go_span` reads and ignore the keys it ignores (stdouttrace writes
counters the span model has no place for). Every field has the type `go_span` takes, so a
value of another type fails the decode and the line takes `go_span`'s path, which declines
it or reads it. Integers are bounded to int64: orjson reads a larger one as a float, which
`go_span` refuses, and a Struct must not accept what the dict path refuses.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class GoValue(msgspec.Struct):
    Type: str | None = None
    Value: str | Int64 | float | bool | None = None


class GoKeyValue(msgspec.Struct):
    Key: str
    Value: GoValue


class GoContext(msgspec.Struct):
    TraceID: str | None = None
    SpanID: str | None = None
    TraceFlags: Any = "00"
    TraceState: str | None = None
    Remote: Any = None


class GoStatus(msgspec.Struct):
    Code: str | None = None
    Description: str | None = None


class GoScope(msgspec.Struct, forbid_unknown_fields=True):
    """Every key known, absent ones UNSET: `go_span` takes InstrumentationLibrary when this
    object is empty, which only a Struct that knows all its keys can tell."""

    Name: str | UnsetType | None = UNSET
    Version: str | UnsetType | None = UNSET
    SchemaURL: Any = UNSET
    Attributes: Any = UNSET

    def is_empty(self) -> bool:
        return (
            self.Name is UNSET
            and self.Version is UNSET
            and self.SchemaURL is UNSET
            and self.Attributes is UNSET
        )


class GoEvent(msgspec.Struct):
    Name: str | None = None
    Time: str | None = None
    Attributes: list[GoKeyValue] | None = None


class GoSpan(msgspec.Struct):
    Name: str | None = None
    SpanContext: GoContext | None = None
    Parent: GoContext | None = None
    SpanKind: Int64 | None = 1
    StartTime: str | None = None
    EndTime: str | None = None
    Attributes: list[GoKeyValue] | None = None
    Events: list[GoEvent] | None = None
    Links: list[Any] | None = None
    Status: GoStatus | None = None
    Resource: list[GoKeyValue] | None = None
    InstrumentationScope: GoScope | None = None
    InstrumentationLibrary: GoScope | None = None  # the older name, taken when the other is empty
    # Keys that make `auto` route the line as OTLP/JSON: present, the line takes the dict path.
    resourceSpans: Any = UNSET
    resource_spans: Any = UNSET
    scopeSpans: Any = UNSET
    scope_spans: Any = UNSET


decode_go_span = msgspec.json.Decoder(GoSpan).decode
DecodeError = msgspec.DecodeError
__all__ = ["UNSET", "DecodeError", "GoSpan", "UnsetType", "decode_go_span"]
