"""OpenTelemetry SDK console spans as msgspec Structs, for the direct path of `otel-sdk`: one
C-level pass from a line's bytes to typed objects, instead of a dict walked key by key. Go's
stdouttrace (`tracetest.SpanStub`, `GoSpan`) and Python's `ReadableSpan.to_json()` (`PySpan`);
`direct_sdk` walks the dicts, `direct_sdkstructs` these.

The Structs read what the dict walks read and ignore the keys they ignore (stdouttrace writes
counters the span model has no place for). Every field has the type the dict walk takes, so
a value of another type fails the decode and the line takes the dict walk, which declines
it or reads it. Integers are bounded to int64: orjson reads one below -2**63 as a float,
which the dict walk refuses, and a Struct must not accept what the dict walk refuses. Keys
whose mere presence changes the dict walk's answer are read as UNSET when absent. A span's
resource and scope are left as their JSON bytes (`msgspec.Raw`), decoded (`decode_go_scope`,
`decode_go_attributes`, `decode_python_resource`) only when the direct path has not seen
those bytes before. No Struct takes part in a reference cycle, so none is tracked by the
garbage collector (`gc=False`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
NULL = msgspec.Raw(b"null")  # what a Raw field holds when its key is absent, as when null


# A Go attribute value: one Struct per scalar Type, told apart by the Type key (any other
# Type, or a Value of another JSON type, fails the decode: the dict walk then declines it).
# Each Value field has one type, so equal values are identical ones (an INT64 1 never equals
# a BOOL true): the direct path looks attributes up by their (frozen, hashable) Struct.
class GoString(msgspec.Struct, tag_field="Type", tag="STRING", frozen=True, gc=False):
    Value: str


class GoInt(msgspec.Struct, tag_field="Type", tag="INT64", frozen=True, gc=False):
    Value: Int64


class GoBool(msgspec.Struct, tag_field="Type", tag="BOOL", frozen=True, gc=False):
    Value: bool


class GoFloat(msgspec.Struct, tag_field="Type", tag="FLOAT64", frozen=True, gc=False):
    Value: float  # a JSON integer too, as a float: what `go_attributes` makes of it


class GoKeyValue(msgspec.Struct, frozen=True, gc=False):
    Key: str
    Value: GoString | GoInt | GoBool | GoFloat


class GoContext(msgspec.Struct, gc=False):
    """A span's own context: what `go_span` reads of it (Remote is skipped, not decoded)."""

    TraceID: str | None = None
    SpanID: str | None = None
    TraceFlags: Any = "00"
    TraceState: str | None = None


class GoParent(msgspec.Struct, gc=False):
    """The parent's context: `go_span` reads only its SpanID and Remote (a root's all-zero
    TraceID and the rest are skipped, not decoded)."""

    SpanID: str | None = None
    Remote: Any = None


class GoStatus(msgspec.Struct, gc=False):
    Code: str | None = None
    Description: str | None = None


class GoScope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
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


class GoEvent(msgspec.Struct, gc=False):
    Name: str | None = None
    Time: str | None = None
    Attributes: list[GoKeyValue] | None = None


class GoSpan(msgspec.Struct, gc=False):
    Name: str | None = None
    SpanContext: GoContext | None = None
    Parent: GoParent | None = None
    SpanKind: Int64 | None = 1
    StartTime: str | None = None
    EndTime: str | None = None
    Attributes: list[GoKeyValue] | None = None
    Events: list[GoEvent] | None = None
    Links: list[Any] | None = None
    Status: GoStatus | None = None
    # The next three as their JSON bytes: the direct path looks their key up by them.
    Resource: msgspec.Raw = NULL  # list[GoKeyValue] | None
    InstrumentationScope: msgspec.Raw = NULL  # GoScope | None
    InstrumentationLibrary: msgspec.Raw = NULL  # the older name, taken when the other is empty
    # Keys that make `auto` route the line as OTLP/JSON: present, the line takes the dict path.
    resourceSpans: Any = UNSET
    resource_spans: Any = UNSET
    scopeSpans: Any = UNSET
    scope_spans: Any = UNSET
    # A JobFirst line's message keys: `auto` keeps a file's format only for records without.
    message: Any = UNSET
    msg: Any = UNSET


class PyContext(msgspec.Struct, gc=False):
    trace_id: str | None = None
    span_id: str | None = None
    trace_state: str | None = None


class PyStatus(msgspec.Struct, gc=False):
    status_code: str | None = None
    description: str | None = None


PyValue = str | Int64 | float | bool | None


class PyEvent(msgspec.Struct, gc=False):
    name: str | None = None
    timestamp: str | None = None
    attributes: dict[str, PyValue] | None = None


class PyResource(msgspec.Struct, gc=False):
    attributes: dict[str, PyValue] | None = None


class PySpan(msgspec.Struct, gc=False):
    name: str | UnsetType | None = UNSET
    context: PyContext | UnsetType | None = UNSET
    kind: str | None = "SpanKind.INTERNAL"
    parent_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    status: PyStatus | None = None
    attributes: dict[str, PyValue] | None = None
    events: list[PyEvent] | None = None
    links: list[Any] | None = None
    resource: msgspec.Raw = NULL  # PyResource | None, its JSON bytes: the key is looked up
    # Present: Go's object (the named format) or another route (`auto`): the dict walk's.
    SpanContext: Any = UNSET
    resourceSpans: Any = UNSET
    resource_spans: Any = UNSET
    scopeSpans: Any = UNSET
    scope_spans: Any = UNSET
    message: Any = UNSET
    msg: Any = UNSET


decode_go_span = msgspec.json.Decoder(GoSpan).decode
decode_go_attributes = msgspec.json.Decoder(list[GoKeyValue] | None).decode
decode_go_scope = msgspec.json.Decoder(GoScope | None).decode
decode_python_span = msgspec.json.Decoder(PySpan).decode
decode_python_resource = msgspec.json.Decoder(PyResource | None).decode
DecodeError = msgspec.DecodeError
__all__ = [
    "UNSET",
    "DecodeError",
    "GoSpan",
    "PySpan",
    "decode_go_attributes",
    "decode_go_scope",
    "decode_go_span",
    "decode_python_resource",
    "decode_python_span",
]
