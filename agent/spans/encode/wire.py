"""Protobuf wire-format primitives for the OTLP encoder, tuned for CPython.

Only what `agent.spans.encode.protobuf` needs: varints, length-delimited fields, fixed64,
and `AnyValue` / `KeyValue` bodies for attribute values. Tags are precomputed
bytes; encoded attribute keys are cached (bounded) because a service repeats the
same few dozen keys in every span.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Final

from agent.spans.model import AttrValue
from agent.spans.validate import INT64_MAX, INT64_MIN

VARINT_TABLE_SIZE: Final = 1 << 14
_KEY_CACHE_LIMIT: Final = 4096

pack_double: Final = struct.Struct("<d").pack
pack_fixed64: Final = struct.Struct("<Q").pack
pack_fixed32: Final = struct.Struct("<I").pack


def _varint_slow(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# varint(n) for 0 <= n < VARINT_TABLE_SIZE: lengths of nearly every field, looked up.
VARINT_TABLE: Final = [_varint_slow(n) for n in range(VARINT_TABLE_SIZE)]


def varint(value: int) -> bytes:
    """Unsigned varint; negative int64 values as their 10-byte two's complement."""
    if 0 <= value < VARINT_TABLE_SIZE:
        return VARINT_TABLE[value]
    if value < 0:
        value += 1 << 64
    return _varint_slow(value)


def varint_size(value: int) -> int:
    size = 1
    while value > 0x7F:
        value >>= 7
        size += 1
    return size


def field_bytes(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (VARINT_TABLE[size] if size < VARINT_TABLE_SIZE else _varint_slow(size)) + payload


def string_field(tag: bytes, text: str) -> bytes:
    return field_bytes(tag, text.encode())


# A `StringFields` keeps at most this many texts, each of at most this many characters
# (module constants: a compiled dict subclass does not find class constants through self).
STRING_FIELDS_LIMIT: Final = 4096
STRING_FIELD_MAX_CHARS: Final = 128


class StringFields(dict[str, bytes]):
    """Encoded string fields of one tag by text (`fields[text]`), for span and event names
    and status messages, which repeat far more than they vary: a hit is a plain dict lookup.
    Bounded (`STRING_FIELDS_LIMIT`); long texts are encoded every time."""

    def __init__(self, tag: bytes) -> None:
        super().__init__()
        self.tag = tag

    def __missing__(self, text: str) -> bytes:
        encoded = string_field(self.tag, text)
        if len(text) <= STRING_FIELD_MAX_CHARS:
            if len(self) >= STRING_FIELDS_LIMIT:
                self.clear()
            self[text] = encoded
        return encoded


# AnyValue field tags.
_STRING: Final = b"\x0a"
_BOOL_TRUE: Final = b"\x10\x01"
_BOOL_FALSE: Final = b"\x10\x00"
_INT: Final = b"\x18"
_DOUBLE: Final = b"\x21"
_ARRAY: Final = b"\x2a"
_KVLIST: Final = b"\x32"
_BYTES: Final = b"\x3a"
# KeyValue: key = 1, value = 2; ArrayValue.values = 1; KeyValueList.values = 1.
_KV_KEY: Final = b"\x0a"
_KV_VALUE: Final = b"\x12"
_VALUES: Final = b"\x0a"


def any_value(value: AttrValue) -> bytes:
    """The body of an `AnyValue` message holding `value`."""
    kind = type(value)
    if kind is str:
        return field_bytes(_STRING, value.encode())  # type: ignore[union-attr]
    if kind is bool:
        return _BOOL_TRUE if value else _BOOL_FALSE
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return _INT + varint(value)  # type: ignore[arg-type]
        return field_bytes(_STRING, str(value).encode())
    if kind is float:
        return _DOUBLE + pack_double(value)
    if value is None:
        return b""
    if kind is bytes:
        return field_bytes(_BYTES, value)  # type: ignore[arg-type]
    if kind is list:
        return field_bytes(_ARRAY, b"".join(_array_item(v) for v in value))  # type: ignore[union-attr]
    if kind is dict:
        return field_bytes(_KVLIST, key_values(_VALUES, value))  # type: ignore[arg-type]
    raise TypeError(f"not an attribute value: {kind.__name__}")


def _array_item(value: AttrValue) -> bytes:
    return field_bytes(_VALUES, any_value(value))


# Encoded attributes for short strings and ints, each with its field tag: most attribute
# values repeat (methods, routes, status codes, hosts), and a dict hit is several times cheaper
# than encoding. One cache per tag (span, event, link, resource attributes), so a hit is the
# whole field. Only exact str/int values are looked up, as True == 1 == 1.0 would collide as
# dict keys. A key that keeps bringing new values (user IDs, URLs) stops being cached, so it
# cannot churn the cache and evict the values that do repeat; its values are then encoded
# from its cached key prefix with no cache bookkeeping, the cheapest miss. Each tag's cache
# holds at most PAIR_CACHE_LIMIT pairs (there are four tags).
_pair_caches: Final[dict[bytes, dict[tuple[str, AttrValue], bytes]]] = {}
_values_cached_per_key: Final[dict[str, int]] = {}
_uncached_keys: Final[dict[str, bytes]] = {}  # key -> its `_key_prefix`
PAIR_CACHE_LIMIT: Final = 8192
PAIR_MAX_CHARS: Final = 64
VALUES_PER_KEY_LIMIT: Final = 256
_key_prefixes: Final[dict[str, bytes]] = {}
# For a string of n < 126 UTF-8 bytes: KeyValue.value length, AnyValue.string_value tag
# and string length, each one byte.
_SHORT_STRING_HEAD: Final = [VARINT_TABLE[n + 2] + _STRING + VARINT_TABLE[n] for n in range(126)]


def _key_prefix(key: str) -> bytes:
    """Encoded `KeyValue.key` field followed by the `KeyValue.value` tag, cached."""
    prefix = _key_prefixes.get(key)
    if prefix is None:
        if len(_key_prefixes) >= _KEY_CACHE_LIMIT:
            _key_prefixes.clear()  # unbounded key sets (IDs as keys) must not grow memory
        prefix = _key_prefixes[key] = string_field(_KV_KEY, key) + _KV_VALUE
    return prefix


def pair_prefix(key: str) -> bytes:
    """What a `KeyValue` field of `key` holds between its length and its value's length: the
    encoded key and the value's tag (`prefixed_pair_field` takes it), looked up."""
    return _key_prefix(key)


def prefixed_pair_field(tag: bytes, prefix: bytes, value: AttrValue) -> bytes:
    """`pair_field(tag, key, value)` for the key whose `pair_prefix` is `prefix`: for a caller
    that keeps the prefix, with no lookup of the key."""
    return tag + _framed_with_prefix(prefix, value)


def string_pair_encoder(tag: bytes, key: str) -> Callable[[str], bytes]:
    """The `KeyValue` field (with the given tag) of one key with a string value, as the
    encoders write it, uncached: for a value that never repeats (an ID), which a cache would
    only churn. The key is encoded once."""
    prefix = _key_prefix(key)  # the bytes, kept here: the prefix cache may be cleared

    def encode(value: str) -> bytes:
        return tag + _framed_with_prefix(prefix, value)

    return encode


def _framed_pair(key: str, value: AttrValue) -> bytes:
    """Length prefix + KeyValue body for one attribute."""
    return _framed_with_prefix(_key_prefix(key), value)


def pair_field(tag: bytes, key: str, value: AttrValue) -> bytes:
    """One attribute as a `KeyValue` field with the given tag: what `key_values` and the
    pair encoders write for it, whether they take it from a cache or not."""
    return tag + _framed_pair(key, value)


def _framed_with_prefix(prefix: bytes, value: AttrValue) -> bytes:
    if type(value) is str:
        data = value.encode()
        size = len(data)
        if size < 126:
            body_len = len(prefix) + 3 + size
            if body_len < VARINT_TABLE_SIZE:
                return VARINT_TABLE[body_len] + prefix + _SHORT_STRING_HEAD[size] + data
    any_body = any_value(value)
    body = prefix + varint(len(any_body)) + any_body
    return varint(len(body)) + body


def _cache_pair(
    tag: bytes, cache: dict[tuple[str, AttrValue], bytes], item: tuple[str, AttrValue]
) -> bytes:
    """Encode a str/int attribute with its tag and remember it, unless its key is
    high-cardinality (then it is marked as such)."""
    key, value = item
    framed = pair_field(tag, key, value)
    if type(value) is str and len(value) > PAIR_MAX_CHARS:
        return framed
    seen = _values_cached_per_key.get(key, 0)
    if seen >= VALUES_PER_KEY_LIMIT:
        if len(_uncached_keys) >= _KEY_CACHE_LIMIT:
            _uncached_keys.clear()
        _uncached_keys[key] = _key_prefix(key)
        return framed
    if len(cache) >= PAIR_CACHE_LIMIT:
        cache.clear()  # unbounded value sets must not grow memory
        _values_cached_per_key.clear()
        seen = 0
    cache[item] = framed
    _values_cached_per_key[key] = seen + 1
    return framed


def _pair_cache(tag: bytes) -> dict[tuple[str, AttrValue], bytes]:
    cache = _pair_caches.get(tag)
    if cache is None:
        cache = _pair_caches[tag] = {}
    return cache


PairEncoder = Callable[[Mapping[str, AttrValue]], bytes | None]


def scalar_pair_encoder(tag: bytes) -> PairEncoder:
    """`scalar_key_values` for one tag, with its cache bound once (a few percent of the hot
    path's CPU go to looking it up per call otherwise)."""
    cache = _pair_cache(tag)  # caches are cleared, never replaced: the binding stays valid
    cached, uncached = cache.get, _uncached_keys.get

    def encode(attributes: Mapping[str, AttrValue]) -> bytes | None:
        parts: list[bytes] = []
        append = parts.append
        for item in attributes.items():
            kind = type(item[1])
            if kind is str or kind is int:
                framed = cached(item)
                if framed is None:
                    prefix = uncached(item[0]) if kind is str else None
                    if prefix is None:
                        framed = _cache_pair(tag, cache, item)
                    else:
                        framed = tag + _framed_with_prefix(prefix, item[1])
            elif kind is list or kind is dict:
                return None
            else:
                framed = pair_field(tag, item[0], item[1])
            append(framed)
        return b"".join(parts)

    return encode


_scalar_encoders: Final[dict[bytes, PairEncoder]] = {}  # one per tag: a handful


def scalar_key_values(tag: bytes, attributes: Mapping[str, AttrValue]) -> bytes | None:
    """Repeated `KeyValue` fields with the given tag, concatenated; None if a value is a list
    or a map (`key_values` takes those)."""
    encode = _scalar_encoders.get(tag)
    if encode is None:
        encode = _scalar_encoders[tag] = scalar_pair_encoder(tag)
    return encode(attributes)


def key_values(tag: bytes, attributes: Mapping[str, AttrValue]) -> bytes:
    """Repeated `KeyValue` fields with the given tag, concatenated."""
    encoded = scalar_key_values(tag, attributes)
    if encoded is None:
        encoded = b"".join([pair_field(tag, k, v) for k, v in attributes.items()])
    return encoded
