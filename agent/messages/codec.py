"""Request bodies → envelopes, with errors precise enough to fix the request from.

An envelope is a plain tuple `(id | None, data, headers | None, metadata | None)`: thousands are
made per batch, and a tuple costs a fraction of an object. Everything a client sends is checked
here (shape, types, limits); what depends on the topic's layout (reserved field names) is
checked in `layout`. A batch is all or nothing: the first bad entry fails the request with its
index.

The common JSON body, `{"data": ...}` or an array of them, takes a fast path: msgspec checks the
whole document and hands each `data` back as its JSON text (`msgspec.Raw`), which the jobfirst
layout embeds as sent, with no parse into Python objects and no re-encoding (a sixth of the
cost). msgpack bodies of the same shape end the same way when the native build is loaded:
its C transcoder (`agent.messages.msgpackjson`) writes each `data` straight from the msgpack
bytes as the JSON text the general path would store for it (Go's escapes included), kept as
msgspec.Raw like a JSON body's own text. What the transcoder does not handle (bin, extension
types, non-string or repeated map keys, NaN, invalid UTF-8, ...; or no build) takes the typed
route: msgspec decodes the body (an envelope Struct or an array of them) straight into the
values the general path would make, and the layout writes every `data` of the batch as JSON in
one call. Anything else, and anything that fails there, goes the general way (orjson,
msgpack), which also words the errors.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, TypeVar

import msgpack
import msgspec
import orjson

from agent.messages.bodystructs import DATA_ONLY, DATA_ONLY_MSGPACK, DataOnly, DataOnlyValue
from agent.messages.message import is_valid_message_id, may_need_go_escape
from agent.messages.msgpackjson import data_texts

Envelope = tuple[str | None, Any, dict[str, str] | None, dict[str, Any] | None]

JSON_TYPES = frozenset({"application/json", "text/json"})
MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)
CLOUDEVENTS_JSON = "application/cloudevents+json"
ENVELOPE_KEYS = frozenset({"data", "id", "headers", "metadata", "key"})
# The envelope's `key` is kept as metadata.partitionKey (Dapr's name): partitioned topics route
# by it, and consumers see which key a message had.
PARTITION_KEY = "partitionKey"
MAX_KEY_CHARS = 256
MAX_HEADERS = 64
MAX_HEADER_NAME_CHARS = 256
MAX_HEADER_BYTES = 64 * 1024
MAX_BATCH_ENTRIES = 100_000
# orjson refuses to write values nested deeper than 254; a raw `data` shorter than this cannot
# be (every level takes two bytes), so only longer ones need counting.
MAX_ENCODABLE_DEPTH = 254
_DEEP_ENOUGH = 2 * (MAX_ENCODABLE_DEPTH + 1)
# How many 0x7f/0xff bytes `_may_hold_non_finite` looks at before it leaves the answer to the
# exact check (a body of many -1 integers must not cost a Python step per byte).
_NON_FINITE_LOOKS = 64


# Digits become "0", exponent letters "\x01" and signs go: a number that might not fit a double
# then shows up as a short run (see _may_overflow_double).
_NUMBER_SHAPES = bytes.maketrans(b"0123456789eE", b"0000000000\x01\x01")
_LONGEST_DOUBLE_DIGITS = 309  # 1e308 is the largest power of ten a double holds


class BodyError(Exception):
    """The request cannot be taken as sent; `index` names the bad entry of a batch."""

    def __init__(self, status: int, code: str, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.index = index


def entry_error(index: int, message: str) -> BodyError:
    return BodyError(400, "invalid_entry", f"entry {index}: {message}", index)


def media_type(content_type: str) -> str:
    if content_type == "application/json":  # what nearly every client sends, as is
        return content_type
    return content_type.partition(";")[0].strip().lower()


def is_json_type(kind: str) -> bool:
    return kind in JSON_TYPES or kind.endswith("+json")


# How a publish body was decoded (the label of `sidecar_publish_body_routes_total`): a fast
# route, or the general one a fast route declined the body to.
ROUTE_JSON_RAW = "json_raw"  # data-only JSON, each `data` kept as its text
ROUTE_MSGPACK_TRANSCODED = "msgpack_transcoded"  # data-only msgpack, the native transcoder
ROUTE_MSGPACK_TYPED = "msgpack_typed"  # msgpack the transcoder declined (or no native build)
ROUTE_GENERAL = "general"  # anything else: orjson / msgpack and the envelope checks
BODY_ROUTES = (ROUTE_JSON_RAW, ROUTE_MSGPACK_TRANSCODED, ROUTE_MSGPACK_TYPED, ROUTE_GENERAL)


class DecodedBody(NamedTuple):
    """A publish body's envelopes; whether a message made from them may hold a character Go's
    encoder escapes (the layout's `escape`: False spares it a scan per message); and which
    route decoded it (one of BODY_ROUTES), so a fast route's declines show in the metrics."""

    envelopes: list[Envelope]
    escape: bool
    route: str


def decode_publish_body(body: bytes, kind: str) -> DecodedBody:
    """`decode_envelopes`, whether the layout must look for characters to escape (the
    transcoder's texts come escaped already, anything else may hold what the body holds), and
    the route taken."""
    if kind in MSGPACK_TYPES:
        transcoded = _transcoded_envelopes(body)
        if transcoded is not None:
            return DecodedBody(transcoded, False, ROUTE_MSGPACK_TRANSCODED)
        return DecodedBody(
            _typed_msgpack_envelopes(body), may_need_go_escape(body), ROUTE_MSGPACK_TYPED
        )
    escape = may_need_go_escape(body)
    if kind in JSON_TYPES:
        fast = _data_only_envelopes(body)
        if fast is not None:
            return DecodedBody(fast, escape, ROUTE_JSON_RAW)
    return DecodedBody(envelopes_from(decode_body(body, kind)), escape, ROUTE_GENERAL)


def decode_envelopes(body: bytes, kind: str) -> list[Envelope]:
    """A publish body (JSON or msgpack, `kind` as `media_type` gives it) → its envelopes."""
    if kind in JSON_TYPES:
        fast = _data_only_envelopes(body)
        if fast is not None:
            return fast
    elif kind in MSGPACK_TYPES:
        transcoded = _transcoded_envelopes(body)
        if transcoded is not None:
            return transcoded
        return _typed_msgpack_envelopes(body)
    return envelopes_from(decode_body(body, kind))


def _transcoded_envelopes(body: bytes) -> list[Envelope] | None:
    """A data-only msgpack body's envelopes, each `data` as the JSON text the native
    transcoder wrote (escaped already); None when it did not handle the body."""
    texts = data_texts(body, MAX_BATCH_ENTRIES)
    if texts is None:
        return None
    return [(None, text, None, None) for text in texts]


def _typed_msgpack_envelopes(body: bytes) -> list[Envelope]:
    """A msgpack body the transcoder left alone: typed by msgspec when it is data-only and
    holds no NaN or infinity, else parsed by the general path (which words the errors)."""
    if _may_hold_non_finite(body):
        return _finite_only(envelopes_from(decode_msgpack(body)))
    fast = _data_only_msgpack_envelopes(body)
    if fast is not None:
        return fast
    return envelopes_from(decode_msgpack(body))


def _may_hold_non_finite(body: bytes) -> bool:
    """Whether the body may hold a NaN or an infinity: a float32 (0xca) or float64 (0xcb)
    whose exponent bits are all ones, so its first byte is 0x7f or 0xff. Those two bytes are
    rare in msgpack (the integers 127 and -1), so one memchr-fast search for each rules most
    bodies out; bytes inside strings can match, which only costs `_finite_only`'s check."""
    looks = 0
    for marker in (b"\x7f", b"\xff"):
        at = body.find(marker, 1)
        while at > 0:
            looks += 1
            if looks > _NON_FINITE_LOOKS or _all_ones_exponent(body[at - 1], body[at + 1 : at + 2]):
                return True
            at = body.find(marker, at + 1)
    return False


def _all_ones_exponent(lead: int, after: bytes) -> bool:
    """Whether a float's type byte and the byte after its 0x7f/0xff say NaN or infinity."""
    if not after:
        return False
    if lead == 0xCB:  # float64: 11 exponent bits
        return after[0] >= 0xF0
    return lead == 0xCA and after[0] >= 0x80  # float32: 8 exponent bits


def _finite_only(envelopes: list[Envelope]) -> list[Envelope]:
    """The envelopes, unless a `data` or `metadata` holds a NaN or an infinity: JSON has no
    such number (a JSON body cannot carry one either), so the entry is refused rather than
    written as null."""
    for index, envelope in enumerate(envelopes):
        for field, value in (("data", envelope[1]), ("metadata", envelope[3])):
            if not _finite(value):
                message = f"{field} cannot be written as JSON: it holds a NaN or infinite float"
                raise entry_error(index, message)
    return envelopes


def _finite(value: Any) -> bool:
    """Whether no float in the value (its map keys included) is a NaN or an infinity."""
    pending = [value]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return False
        elif kind is list or kind is tuple:
            pending.extend(value)
        elif kind is dict:
            pending.extend(value)
            pending.extend(value.values())
    return True


def _data_only_msgpack_envelopes(body: bytes) -> list[Envelope] | None:
    """The msgpack twin of `_data_only_envelopes`: `{"data": ...}` or a non-empty array of
    them, typed by msgspec into the values the general path makes; None for anything else."""
    try:
        value = DATA_ONLY_MSGPACK.decode(body)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        # ValueError: msgpack.ExtType refused a negative extension code (the general path
        # refuses it too, naming the byte).
        return None
    if isinstance(value, DataOnlyValue):
        return [(None, value.data, None, None)]
    if not value or len(value) > MAX_BATCH_ENTRIES:
        return None
    return [(None, item.data, None, None) for item in value]


def _data_only_envelopes(body: bytes) -> list[Envelope] | None:
    """`{"data": ...}` or a non-empty array of them, `data` kept as raw JSON text; None when
    the body is anything else or not valid (the general path then decides and says why)."""
    value = decode_keeping_raw(DATA_ONLY, body)
    if value is None:
        return None
    if isinstance(value, DataOnly):
        return [(None, encodable(value.data), None, None)]
    if not value or len(value) > MAX_BATCH_ENTRIES:
        return None
    if any(len(item.data) >= _DEEP_ENOUGH for item in value):
        return [(None, encodable(item.data), None, None) for item in value]
    return [(None, item.data, None, None) for item in value]


T = TypeVar("T")


def decode_keeping_raw(decoder: msgspec.json.Decoder[T], body: bytes) -> T | None:
    """`decoder.decode(body)` for a decoder that keeps values as their JSON text (msgspec.Raw),
    when the body lets them be kept (`_may_keep_raw_json`); None when it does not, or does not
    fit the decoder (the general path then decides and says why)."""
    if not _may_keep_raw_json(body):
        return None
    try:
        return decoder.decode(body)
    except (msgspec.MsgspecError, RecursionError):
        return None


def _may_keep_raw_json(body: bytes) -> bool:
    """Whether values of this JSON body may be kept as their own text (msgspec.Raw): its UTF-8
    is valid (msgspec skips over a Raw value without checking it) and no number in it may
    overflow a double."""
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return False
    return not _may_overflow_double(body)


def _may_overflow_double(body: bytes) -> bool:
    """Whether a number in the body might not fit a double: an exponent of three digits or
    more, or 309 digits in a row (strings can match too; that only costs the general path).
    msgspec skips over `data` without looking at its numbers, but orjson refuses `1e400` and
    Go's decoder cannot read it either, so those bodies take the general path and its answer.
    """
    shapes = body.translate(_NUMBER_SHAPES, b"+-")
    return b"\x01000" in shapes or b"0" * _LONGEST_DOUBLE_DIGITS in shapes


def encodable(data: msgspec.Raw) -> Any:
    """Raw JSON that may nest deeper than orjson writes becomes a Python value, so that it
    meets the same limit (and error) as on the general path."""
    if len(data) < _DEEP_ENOUGH:
        return data
    text = bytes(data)
    if text.count(b"[") + text.count(b"{") <= MAX_ENCODABLE_DEPTH:
        return data
    return orjson.loads(text)


def plain(data: Any) -> Any:
    """A `data` value as Python objects (raw JSON text from the fast path is parsed)."""
    return orjson.loads(bytes(data)) if type(data) is msgspec.Raw else data


def decode_body(body: bytes, kind: str) -> Any:
    """Parse a JSON or msgpack body (`kind` is the media type, lower case, no parameters)."""
    if kind in JSON_TYPES:
        return decode_json(body)
    if kind in MSGPACK_TYPES:
        return decode_msgpack(body)
    raise BodyError(
        415,
        "unsupported_media_type",
        f"Content-Type {kind or '(none)'!r} is not application/json or application/msgpack",
    )


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno} (byte {error.pos})"
        raise BodyError(400, "bad_body", f"invalid JSON at {where}: {error.msg}") from None


def decode_msgpack(body: bytes) -> Any:
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=False, timestamp=3, max_buffer_size=max(len(body), 1)
    )
    unpacker.feed(body)
    try:
        value = unpacker.unpack()
    except msgpack.OutOfData:
        raise BodyError(400, "bad_body", "invalid msgpack: the body ends inside a value") from None
    except OverflowError:  # a timestamp a datetime cannot hold
        message = f"msgpack timestamp near byte {unpacker.tell()} is outside the years 1-9999"
        raise BodyError(400, "bad_body", message) from None
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        detail = str(error) or type(error).__name__
        message = f"invalid msgpack near byte {unpacker.tell()}: {detail}"
        raise BodyError(400, "bad_body", message) from None
    if unpacker.tell() != len(body):
        message = f"invalid msgpack: {len(body) - unpacker.tell()} extra bytes after the value"
        raise BodyError(400, "bad_body", message)
    return value


def envelopes_from(value: Any) -> list[Envelope]:
    """`{"data", "id"?, "key"?, "headers"?, "metadata"?}` or a non-empty array of them."""
    if isinstance(value, dict):
        return [_envelope(0, value)]
    if not isinstance(value, list):
        message = "the body must be a message object or an array of them"
        raise BodyError(400, "bad_body", message)
    if not value:
        raise BodyError(400, "bad_body", "the array holds no messages")
    if len(value) > MAX_BATCH_ENTRIES:
        message = f"{len(value)} messages in one request; the limit is {MAX_BATCH_ENTRIES}"
        raise BodyError(400, "bad_body", message)
    if all(type(item) is dict and len(item) == 1 and "data" in item for item in value):
        return [(None, item["data"], None, None) for item in value]  # data only: the hot path
    make = _envelope
    return [make(index, item) for index, item in enumerate(value)]


def _envelope(index: int, item: Any) -> Envelope:
    if not isinstance(item, dict):
        raise entry_error(index, f"must be an object, not {type_name(item)}")
    if "data" not in item:
        raise entry_error(index, 'has no "data"')
    if len(item) == 1:  # the common case: data only
        return (None, item["data"], None, None)
    extra = item.keys() - ENVELOPE_KEYS
    if extra:
        raise entry_error(index, f"unknown key {sorted(map(str, extra))[0]!r}")
    message_id = item.get("id")
    if message_id is not None and not is_valid_message_id(message_id):
        raise entry_error(index, "id must be 1-256 printable characters without edge spaces")
    metadata = item.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise entry_error(index, f"metadata must be an object, not {type_name(metadata)}")
    if "key" in item:
        metadata = _with_key(index, item["key"], metadata)
    headers = check_headers(index, item.get("headers"))
    return (message_id, item["data"], headers, metadata)


def _with_key(index: int, key: Any, metadata: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise entry_error(index, f"key must be a string of 1-{MAX_KEY_CHARS} characters")
    given = (metadata or {}).get(PARTITION_KEY, key)
    if given != key:
        raise entry_error(index, f"key and metadata.{PARTITION_KEY} differ")
    return {**(metadata or {}), PARTITION_KEY: key}


def check_headers(index: int, headers: Any) -> dict[str, str] | None:
    """Headers become stream fields: string to string, non-empty names, bounded in size."""
    if headers is None:
        return None
    if not isinstance(headers, dict):
        raise entry_error(index, f"headers must be an object, not {type_name(headers)}")
    if len(headers) > MAX_HEADERS:
        raise entry_error(index, f"{len(headers)} headers; the limit is {MAX_HEADERS}")
    total = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not name:
            raise entry_error(index, "header names must be non-empty strings")
        if len(name) > MAX_HEADER_NAME_CHARS:
            raise entry_error(index, f"header name longer than {MAX_HEADER_NAME_CHARS} characters")
        if not isinstance(value, str):
            raise entry_error(index, f"header {name!r} must be a string, not {type_name(value)}")
        total += len(name) + len(value)
    if total > MAX_HEADER_BYTES:
        message = f"headers hold {total} characters; the limit is {MAX_HEADER_BYTES}"
        raise entry_error(index, message)
    return headers or None


def type_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
