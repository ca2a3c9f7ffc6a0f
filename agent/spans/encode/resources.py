"""Resources: which ResourceSpans a span joins, and its resource merged with the configured one.

    key = resource_key(span)                # spans with equal keys share a ResourceSpans
    resources = Resources(service_name=..., attributes=...)   # from config
    resources.attributes_for(key)           # the merged resource attributes
    resource, scope = resources.headers(key)  # both encoded for OTLP/protobuf, cached

Every encoder (protobuf, protojson, the direct writer) takes its resources from here.

Resource merge, lowest to highest precedence: `Resources.attributes`
(OTEL_RESOURCE_ATTRIBUTES), `service.name` = `Resources.service_name`
(OTEL_SERVICE_NAME / per-path default; "unknown_service" if neither), the record's
own resource attributes, then the record's service (`Span.service_name`). The record
wins because it is the more specific statement about where the span came from.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable, Mapping
from typing import Any, Final

from agent.spans.encode.wire import (
    field_bytes,
    key_values,
    pack_double,
    string_field,
    varint_size,
)
from agent.spans.model import Attributes, AttrValue, Span
from agent.spans.types import ResourceKey

DEFAULT_SERVICE_NAME: Final = "unknown_service"
SERVICE_NAME: Final = "service.name"

# Resource / InstrumentationScope field tags (ResourceSpans.resource = 1, ScopeSpans.scope = 1).
_RESOURCE: Final = b"\x0a"
_SCOPE: Final = b"\x0a"
_RESOURCE_ATTRIBUTES: Final = b"\x0a"
_SCOPE_NAME: Final = b"\x0a"
_SCOPE_VERSION: Final = b"\x12"


_FLOAT_BITS: Final = "float bits"  # not a type's name
_unpack_double: Final = struct.Struct("<d").unpack


def _freeze(value: AttrValue) -> Hashable:
    """A hashable stand-in for an attribute value, equal to another exactly when OTLP writes
    both the same: type-exact (True != 1 here), and a float that is NaN or zero by its bits
    (NaN equals nothing, not even itself, so keys holding floats equal as NaN would equal
    only when they hold one float object, which compiled code, boxing floats afresh, never
    keeps; and -0.0 == 0.0 are written differently)."""
    kind = type(value)
    if kind is list:
        return ("list", tuple(_freeze(item) for item in value))  # type: ignore[union-attr]
    if kind is dict:
        return ("dict", tuple((k, _freeze(v)) for k, v in value.items()))  # type: ignore[union-attr]
    if kind is float and (not value or math.isnan(value)):  # type: ignore[arg-type]
        return (_FLOAT_BITS, pack_double(value))
    return (kind.__name__, value)


def _thaw(frozen: Any) -> AttrValue:
    kind, payload = frozen
    if kind == "list":
        return [_thaw(item) for item in payload]
    if kind == "dict":
        return {k: _thaw(v) for k, v in payload}
    if kind == _FLOAT_BITS:
        return _unpack_double(payload)[0]  # type: ignore[no-any-return]
    return payload  # type: ignore[no-any-return]


_SHARED: Final[dict[int, tuple[Attributes, tuple[tuple[str, Hashable], ...]]]] = {}
_SHARED_LIMIT: Final = 4096


def share_resource(resource: Attributes) -> Attributes:
    """Declare `resource` one dict that many spans hold and nobody mutates any more (a file's
    pod attributes): `make_key` freezes it once instead of once per span."""
    if len(_SHARED) >= _SHARED_LIMIT:
        _SHARED.clear()  # only a cache: a dict not found is frozen again
    _SHARED[id(resource)] = (resource, _frozen(resource))
    return resource


def _frozen(resource: Attributes) -> tuple[tuple[str, Hashable], ...]:
    return tuple(sorted((k, _freeze(v)) for k, v in resource.items()))


def resource_key(span: Span) -> ResourceKey:
    """Spans with equal keys share one ResourceSpans/ScopeSpans in a request."""
    return make_key(span.service_name, span.resource, span.scope_name, span.scope_version)


def make_key(
    service: str | None, resource: Attributes, scope_name: str, scope_version: str
) -> ResourceKey:
    """The key of spans with these resource attributes (`service.name` taken out) and scope.

    A resource whose values are all strings (nearly every one, and every empty one) gets the
    same key object each time it comes spelled the same way: no sorting per span, and the
    batcher's and outbound's per-key lookups find it by identity. Only such keys are kept (a
    str equals no other type, so a hit is exact); the cache is bounded and a miss only costs
    building the key."""
    if not resource:
        empty = (service, (), scope_name, scope_version)
        shared = _SHARED_KEYS.get(empty)
        return shared or _share_key(empty, ResourceKey(service, (), scope_name, scope_version))
    shared_dict = _SHARED.get(id(resource))
    if shared_dict is not None and shared_dict[0] is resource:  # see share_resource
        return ResourceKey(service, shared_dict[1], scope_name, scope_version)
    try:
        lookup = (service, tuple(resource.items()), scope_name, scope_version)
        shared = _SHARED_KEYS.get(lookup)
    except TypeError:  # a list or map value is not hashable: build the key as for a miss
        lookup, shared = None, None
    if shared is not None:
        return shared
    frozen = tuple(sorted((k, _freeze(v)) for k, v in resource.items()))
    key = ResourceKey(service, frozen, scope_name, scope_version)
    if lookup is not None and all(type(v) is str for v in resource.values()):
        return _share_key(lookup, key)
    return key


def _share_key(lookup: tuple[object, ...], key: ResourceKey) -> ResourceKey:
    if len(_SHARED_KEYS) >= _SHARED_KEYS_LIMIT:
        _SHARED_KEYS.clear()
    _SHARED_KEYS[lookup] = key
    return key


_SHARED_KEYS: Final[dict[tuple[object, ...], ResourceKey]] = {}
_SHARED_KEYS_LIMIT: Final = 1024


class Resources:
    """The configured resource (service name + attributes) merged with each record's.

    Encoded resource/scope headers are cached per key; the cache is bounded and a
    miss only costs a re-encode.
    """

    _CACHE_LIMIT = 1024

    def __init__(
        self, service_name: str | None = None, attributes: Mapping[str, AttrValue] | None = None
    ) -> None:
        base = dict(attributes or {})
        named = base.get(SERVICE_NAME)
        fallback = named if type(named) is str and named else DEFAULT_SERVICE_NAME
        base[SERVICE_NAME] = service_name or fallback
        self.base: Attributes = base
        self._headers: dict[ResourceKey, tuple[bytes, bytes]] = {}

    def attributes_for(self, key: ResourceKey) -> Attributes:
        service, frozen, _, _ = key
        merged = dict(self.base)
        for name, value in frozen:
            merged[name] = _thaw(value)
        if service:
            merged[SERVICE_NAME] = service
        return merged

    def headers(self, key: ResourceKey) -> tuple[bytes, bytes]:
        """(ResourceSpans.resource field, ScopeSpans.scope field), encoded."""
        cached = self._headers.get(key)
        if cached is None:
            if len(self._headers) >= self._CACHE_LIMIT:
                self._headers.clear()
            resource = key_values(_RESOURCE_ATTRIBUTES, self.attributes_for(key))
            scope = _encode_scope(key[2], key[3])
            cached = self._headers[key] = (field_bytes(_RESOURCE, resource), scope)
        return cached

    def group_size(self, key: ResourceKey, framed_spans: int) -> int:
        """Exact bytes of a ResourceSpans field holding spans whose framed sizes sum to
        `framed_spans` (see `framed_span_size`)."""
        resource, scope = self.headers(key)
        scope_spans = len(scope) + framed_spans
        resource_spans = len(resource) + 1 + varint_size(scope_spans) + scope_spans
        return 1 + varint_size(resource_spans) + resource_spans


def _encode_scope(name: str, version: str) -> bytes:
    body = b""
    if name:
        body += string_field(_SCOPE_NAME, name)
    if version:
        body += string_field(_SCOPE_VERSION, version)
    return field_bytes(_SCOPE, body)
