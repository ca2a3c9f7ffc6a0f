"""Bounded lookups for the Struct direct paths (`direct_otlpstructs`, `direct_sdkstructs`):
what a service repeats line after line — its resource and scope, most attribute values — is
worked out once and looked up after.

    keys = Remembered[tuple[str | None, bytes], ResourceKey](256)
    key = keys.get(lookup)               # None: work it out, then keys.remember(lookup, key)
    latest = Latest[tuple[str | None, msgspec.Raw], ResourceKey]()
    key = latest.get((service, span.resource))   # the last line's, before copying and hashing
    pairs = StructPairs(ATTRIBUTES, key_and_value)   # key_and_value(Struct) -> (key, value)
    encoded = pairs.fields(span.Attributes)          # the attributes' fields, or None

A lookup is only ever by something whose equality means the same answer: the JSON bytes of a
part (`msgspec.Raw`; equal bytes are the same JSON) or a frozen attribute Struct whose value
is of a type where equal means identical (not 0.0 == -0.0, not 1 == 1.0 == True). `Latest`
compares with the last lookup only, by equality alone: so also `msgspec.Raw` parts, which are
equal when their bytes are and cannot be hashed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from agent.spans.encode.wire import (
    PAIR_CACHE_LIMIT,
    PAIR_MAX_CHARS,
    VALUES_PER_KEY_LIMIT,
    pair_field,
    pair_prefix,
    prefixed_pair_field,
)
from agent.spans.model import Attributes, AttrValue

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
S = TypeVar("S", bound=Hashable)
L = TypeVar("L")


class Remembered(dict[K, V]):
    """A dict of at most `limit` entries: `remember` empties it when full (the entries are
    only worked-out answers, so a cleared one is worked out again)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> None:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value


class Latest(Generic[L, V]):
    """The last answer remembered and what it answers: a service writes the same resource in
    line after line, and comparing a line's part with the last one's costs less than copying
    it out to hash it. Holds one lookup (and so the line its `msgspec.Raw` parts are views
    of) at a time."""

    __slots__ = ("_answer", "_lookup")

    def __init__(self) -> None:
        self._lookup: L | None = None
        self._answer: V | None = None

    def get(self, lookup: L) -> V | None:
        return self._answer if lookup == self._lookup else None

    def remember(self, lookup: L, answer: V) -> None:
        self._lookup, self._answer = lookup, answer


class StructPairs(Generic[S]):
    """The encoded KeyValue fields of one tag by attribute Struct (frozen, so hashable):
    (key, field) for each Struct seen whose value is a string of at most `PAIR_MAX_CHARS`, an
    int or a bool, and whose key has had fewer than `VALUES_PER_KEY_LIMIT` values kept — so a key
    whose values never repeat (user IDs, URLs) cannot evict the values that do. `pair`
    reads one Struct as the direct path does: (key, value), None if not one scalar. For
    Structs each of whose fields has one type (an int field never holds a float or a bool):
    then equal Structs holding such a value hold the identical one. Doubles are never kept
    (0.0 == -0.0, and NaN equals nothing)."""

    __slots__ = ("_fields", "_pair", "_per_key", "_tag")

    def __init__(self, tag: bytes, pair: Callable[[S], tuple[str, AttrValue] | None]) -> None:
        self._tag, self._pair = tag, pair
        self._fields: dict[S, tuple[str, bytes]] = {}
        self._per_key: dict[str, int] = {}

    def fields(self, items: list[S] | None) -> bytes | None:
        """What the tag's pair encoder writes for the attributes `pair` reads: the fields
        joined, a key that comes twice in its first place with its last value (as in a
        dict); None if one is not a scalar attribute."""
        if not items:
            return b""
        known = self._fields
        try:
            if len(items) == 1:
                pair = known.get(items[0]) or self._encode(items[0])
                return None if pair is None else pair[1]
            keys: list[str] = []
            fields: list[bytes] = []
            for item in items:
                pair = known.get(item) or self._encode(item)
                if pair is None:
                    return None
                key = pair[0]
                if key in keys:  # rare: a few items, and the keys are the cached objects
                    return self._deduplicated(items)
                keys.append(key)
                fields.append(pair[1])
        except TypeError:  # a list or map inside cannot be hashed, nor is it a scalar
            return None
        return b"".join(fields)

    def _deduplicated(self, items: list[S]) -> bytes | None:
        """`fields` of attributes where a key comes twice: as a dict keeps them."""
        known = self._fields
        pairs: dict[str, bytes] = {}
        for item in items:
            pair = known.get(item) or self._encode(item)
            if pair is None:
                return None
            pairs[pair[0]] = pair[1]
        return b"".join(pairs.values())

    def _encode(self, item: S) -> tuple[str, bytes] | None:
        """(key, field) of a Struct not seen (or no longer kept), kept if it may be by the
        pair encoders' admission rule (`agent.spans.encode.wire`)."""
        pair = self._pair(item)
        if pair is None:
            return None
        key, value = pair
        encoded = (key, pair_field(self._tag, key, value))
        kind = type(value)
        if kind is float or (kind is str and len(value) > PAIR_MAX_CHARS):  # type: ignore[arg-type]
            return encoded
        seen = self._per_key.get(key, 0)
        if seen < VALUES_PER_KEY_LIMIT:
            if len(self._fields) >= PAIR_CACHE_LIMIT:
                self._fields.clear()
                self._per_key.clear()
                seen = 0
            self._fields[item] = encoded
            self._per_key[key] = seen + 1
        return encoded


class KeyedPairs:
    """The encoded KeyValue fields of one tag by key, then by value, for attributes held in a
    dict (JobFirst's line fields): what the tag's pair encoder (`agent.spans.encode.wire`)
    writes, looked up without the (key, value) tuple its cache builds and hashes per
    attribute. Kept, by the pair encoders' admission rule: strings of at most
    `PAIR_MAX_CHARS` and integers (exact types, so True is never taken for 1), until a key
    has had `VALUES_PER_KEY_LIMIT` values; from then on its values (user IDs, URLs) are
    encoded from its key's prefix with no lookup of the value. Bounded: at most
    `PAIR_CACHE_LIMIT` values kept, and as many keys not kept."""

    __slots__ = ("_kept", "_not_kept", "_size", "_tag")

    def __init__(self, tag: bytes) -> None:
        self._tag = tag
        self._kept: dict[str, dict[str | int, bytes]] = {}
        self._not_kept: dict[str, bytes] = {}  # key -> its pair prefix
        self._size = 0

    def fields(self, attributes: Attributes) -> bytes | None:
        """The fields of `attributes` joined, in the dict's order; None if a value is a list or
        a map (the general path's encoder takes those)."""
        parts: list[bytes] = []
        for key, value in attributes.items():
            kind = type(value)
            if kind is str or kind is int:
                values = self._kept.get(key)
                found = None if values is None else values.get(value)  # type: ignore[arg-type]
                if found is None:
                    found = self._encode(key, value)  # type: ignore[arg-type]
            elif kind is list or kind is dict:
                return None
            else:
                found = pair_field(self._tag, key, value)
            parts.append(found)
        return b"".join(parts)

    def _encode(self, key: str, value: str | int) -> bytes:
        prefix = self._not_kept.get(key)
        if prefix is not None:
            return prefixed_pair_field(self._tag, prefix, value)
        encoded = pair_field(self._tag, key, value)
        if type(value) is str and len(value) > PAIR_MAX_CHARS:
            return encoded
        if self._size >= PAIR_CACHE_LIMIT:
            self._kept.clear()
            self._size = 0
        values = self._kept.get(key)
        if values is None:
            values = self._kept[key] = {}
        elif len(values) >= VALUES_PER_KEY_LIMIT:  # a key whose values do not repeat
            del self._kept[key]
            self._size -= len(values)
            if len(self._not_kept) >= PAIR_CACHE_LIMIT:
                self._not_kept.clear()
            self._not_kept[key] = pair_prefix(key)
            return encoded
        values[value] = encoded
        self._size += 1
        return encoded
