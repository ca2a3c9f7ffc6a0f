"""Every fast path writes to Redis exactly what the general path writes for the same values.

Publish bodies take several routes to the same XADD: JSON bodies of data-only envelopes keep
each `data` as the client's JSON text (msgspec.Raw), msgpack bodies of that shape are typed by
msgspec, the jobfirst layout writes a batch's values in one orjson call and assembles the
commands from a template, Dapr single and bulk publishes have their own body shapes. Generated
values go through each route and through the general one (orjson/msgpack parse, one envelope
at a time, `message_json` as the reference) and the bytes are compared.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import msgpack
import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.tree import TopicConfig
from agent.messages.codec import (
    CLOUDEVENTS_JSON,
    BodyError,
    Envelope,
    _data_only_msgpack_envelopes,
    decode_body,
    decode_envelopes,
    decode_publish_body,
    envelopes_from,
    plain,
)
from agent.messages.dapr import (
    cloudevent_id,
    dapr_bulk_body,
    dapr_bulk_entries,
    dapr_data,
    dapr_headers,
)
from agent.messages.layout import EncodedEntries, TopicLayout, _JobfirstParts, fields_of
from agent.messages.message import AcceptTime, dumps_json, may_need_go_escape, message_json
from agent.messages.redis.resp import decode_command

AT = AcceptTime.at(1_732_806_245_123_456_789)
JSON = "application/json"
MSGPACK = "application/msgpack"
LAYOUTS = ("jobfirst", "fields", "raw")

# Text that exercises what Go escapes (<, >, &, U+2028/9), non-ASCII and control characters.
text = st.text(
    alphabet=st.sampled_from(["a", "Z", "0", " ", "<", ">", "&", "é", "\u2028", "\u2029", "\x01"])
    | st.characters(codec="utf-8"),
    max_size=12,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
# msgpack has more than JSON: binary, non-string map keys, timestamps.
timestamps = st.datetimes(
    min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2400, 1, 1), timezones=st.just(dt.UTC)
)
msgpack_scalars = scalars | st.binary(max_size=8) | timestamps
msgpack_keys = text | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.booleans()
# What only some bodies hold, and what no layout can write (the error must then read the same
# on every path): NaN and infinities (refused: JSON has no such number), float, null and binary
# map keys, extension types other than the timestamp, single-precision floats.
unusual_scalars = (
    msgpack_scalars
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 2**64 - 1, -(2**63)])
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
)
unusual_keys = msgpack_keys | st.floats(allow_nan=False) | st.none() | st.binary(max_size=3)
unusual_values = st.recursive(
    unusual_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(unusual_keys, children, max_size=4)
    ),
    max_leaves=12,
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(msgpack_keys, children, max_size=4)
    ),
    max_leaves=12,
)
batches = st.lists(json_values, min_size=1, max_size=6)


def ids_for(count: int) -> list[str]:
    return [f"msg_{AT.unix_ns + n}_ab12" for n in range(count)]


def written(layout: TopicLayout, envelopes: list[Envelope], body: bytes) -> bytes | str:
    """The commands the publish route writes (as the API calls it), or the entry error."""
    try:
        ids = ids_for(len(envelopes))
        return layout.encode(envelopes, ids, AT, escape=may_need_go_escape(body)).blob
    except Exception as error:  # the error is the outcome compared
        return f"{type(error).__name__}: {error}"


def published(layout: TopicLayout, body: bytes, kind: str) -> bytes | str:
    """What the publish route writes: `decode_publish_body` with its own escape decision (the
    native transcoder's texts come escaped, so the layout is told not to look)."""
    try:
        envelopes, escape, _route = decode_publish_body(body, kind)
        return layout.encode(envelopes, ids_for(len(envelopes)), AT, escape=escape).blob
    except Exception as error:  # the error is the outcome compared
        return f"{type(error).__name__}: {error}"


def one_at_a_time(layout: TopicLayout, envelopes: list[Envelope]) -> bytes | str:
    """The general path: each envelope on its own, always scanned for escapes (an error names
    the entry's place in the whole request, as a batch's does)."""
    blobs = []
    for index, (envelope, message_id) in enumerate(
        zip(envelopes, ids_for(len(envelopes)), strict=True)
    ):
        try:
            blobs.append(layout.encode([envelope], [message_id], AT, escape=True).blob)
        except Exception as error:
            message = str(error).replace("entry 0:", f"entry {index}:", 1)
            return f"{type(error).__name__}: {message}"
    return b"".join(blobs)


def as_values(envelopes: list[Envelope]) -> list[Envelope]:
    """The envelopes with each `data` as Python values: msgpack `data` is JSON text (Raw)
    when the native build's transcoder wrote it, values when the typed route decoded it."""
    return [(given, plain(data), headers, meta) for given, data, headers, meta in envelopes]


def body_of(values: list[Any], *, single: bool) -> list[dict[str, Any]] | dict[str, Any]:
    return {"data": values[0]} if single else [{"data": value} for value in values]


@settings(max_examples=300, deadline=None)
@given(values=batches, single=st.booleans())
def test_json_bodies_reach_redis_the_same_on_every_path(values: list[Any], single: bool) -> None:
    body = orjson.dumps(body_of(values, single=single))
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        fast = written(layout, decode_envelopes(body, JSON), body)
        general = envelopes_from(decode_body(body, JSON))
        assert fast == written(layout, general, body) == one_at_a_time(layout, general)
        assert published(layout, body, JSON) == fast


@settings(max_examples=300, deadline=None)
@given(values=st.lists(msgpack_values, min_size=1, max_size=6), single=st.booleans())
def test_msgpack_bodies_reach_redis_as_the_general_path_writes_them(
    values: list[Any], single: bool
) -> None:
    body = msgpack.packb(body_of(values, single=single), datetime=True)
    fast_envelopes = decode_envelopes(body, MSGPACK)
    general = envelopes_from(decode_body(body, MSGPACK))
    assert as_values(fast_envelopes) == general
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        expected = one_at_a_time(layout, general)
        assert written(layout, fast_envelopes, body) == published(layout, body, MSGPACK) == expected


@settings(max_examples=300, deadline=None)
@given(values=st.lists(unusual_values, min_size=1, max_size=6), single=st.booleans())
def test_unusual_msgpack_bodies_decode_and_write_as_the_general_path_does(
    values: list[Any], single: bool
) -> None:
    body = msgpack.packb(body_of(values, single=single), datetime=True)
    general = envelopes_from(decode_body(body, MSGPACK))
    sent = values[:1] if single else values
    refused = next((i for i, value in enumerate(sent) if _non_finite(value)), None)
    if refused is not None:
        with pytest.raises(BodyError) as error:
            decode_envelopes(body, MSGPACK)
        assert error.value.index == refused
        return
    fast = decode_envelopes(body, MSGPACK)
    assert as_values(fast) == general
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        expected = one_at_a_time(layout, general)
        assert written(layout, fast, body) == published(layout, body, MSGPACK) == expected


@settings(max_examples=300, deadline=None)
@given(values=st.lists(unusual_values, min_size=1, max_size=6))
def test_a_msgpack_body_writes_what_a_json_body_of_its_json_form_writes(
    values: list[Any],
) -> None:
    # The same content sent both ways: each msgpack `data` and, in a JSON body, the JSON the
    # agent makes of it (bytes as base64, timestamps in RFC 3339, map keys as strings). The
    # Message JSON in Redis is the same, byte for byte.
    try:
        texts = [dumps_json(value, escape=False) for value in values]
    except (orjson.JSONEncodeError, TypeError):
        return  # no JSON form: test_unusual_msgpack_bodies... holds the refusal
    if any(_non_finite(value) for value in values):
        return  # refused as msgpack (test_unusual_msgpack_bodies...); JSON has no such number
    as_msgpack = msgpack.packb(body_of(values, single=False), datetime=True)
    as_json = b"[" + b",".join(b'{"data":%b}' % text for text in texts) + b"]"
    layout = TopicLayout("orders", TopicConfig())
    from_msgpack = written(layout, decode_envelopes(as_msgpack, MSGPACK), as_msgpack)
    assert from_msgpack == written(layout, decode_envelopes(as_json, JSON), as_json)
    assert published(layout, as_msgpack, MSGPACK) == from_msgpack


def _non_finite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if type(value) in (list, tuple):
        return any(_non_finite(item) for item in value)
    if type(value) is dict:
        return any(_non_finite(key) or _non_finite(item) for key, item in value.items())
    return False


@pytest.mark.parametrize(
    "data",
    [math.nan, math.inf, -math.inf, {"a": [1, {"b": math.nan}]}, {math.inf: 1}],
    ids=["nan", "inf", "-inf", "nested", "key"],
)
@pytest.mark.parametrize("single_float", [False, True], ids=["float64", "float32"])
def test_a_nan_or_infinity_in_msgpack_data_is_refused_with_its_entry(
    data: Any, single_float: bool
) -> None:
    # JSON has no such number and a JSON body cannot carry one: the entry is refused, not
    # written as null.
    body = msgpack.packb([{"data": 1.5}, {"data": data}], use_single_float=single_float)
    with pytest.raises(BodyError) as refused:
        decode_envelopes(body, MSGPACK)
    error = refused.value
    assert (error.status, error.code, error.index) == (400, "invalid_entry", 1)
    assert "NaN or infinite float" in error.message


def test_a_nan_in_msgpack_metadata_is_refused_with_its_entry() -> None:
    body = msgpack.packb([{"data": 1}, {"data": 2, "metadata": {"ratio": math.inf}}])
    with pytest.raises(BodyError) as refused:
        decode_envelopes(body, MSGPACK)
    error = refused.value
    assert (error.status, error.code, error.index) == (400, "invalid_entry", 1)
    assert error.message.startswith("entry 1: metadata cannot be written as JSON")


@pytest.mark.parametrize(
    "data",
    [b"\xcb\x7f\xf8\x00", b"\xca\xff\xc0", 0xCB7FF80000000000, [1.0, -2.5e300, 3e-300]],
    ids=["bin64", "bin32", "uint", "finite"],
)
def test_bytes_that_look_like_a_nan_are_kept(data: Any) -> None:
    # The prefilter matches these bytes; the exact check finds no non-finite float.
    body = msgpack.packb([{"data": data}, {"data": 2}])
    assert as_values(decode_envelopes(body, MSGPACK)) == envelopes_from(decode_body(body, MSGPACK))


def test_an_extension_type_is_refused_alike_on_both_msgpack_paths() -> None:
    body = msgpack.packb([{"data": 1}, {"data": {"at": msgpack.ExtType(7, b"\x00")}}])
    assert decode_envelopes(body, MSGPACK) == envelopes_from(decode_body(body, MSGPACK))
    layout = TopicLayout("orders", TopicConfig())
    with pytest.raises(BodyError) as refused:
        layout.encode(decode_envelopes(body, MSGPACK), ids_for(2), AT)
    assert refused.value.index == 1
    assert refused.value.message == (
        "entry 1: data cannot be written as JSON: msgpack extension type 7 has no JSON form"
    )


@pytest.mark.parametrize("seconds", [253_402_300_800, -62_135_596_801], ids=["10000", "0"])
def test_a_timestamp_no_datetime_holds_is_a_bad_body(seconds: int) -> None:
    body = msgpack.packb([{"data": msgpack.Timestamp(seconds, 0)}])
    with pytest.raises(BodyError) as refused:
        decode_envelopes(body, MSGPACK)
    assert (refused.value.status, refused.value.code) == (400, "bad_body")
    assert "outside the years 1-9999" in refused.value.message


@settings(max_examples=200, deadline=None)
@given(values=batches)
def test_msgpack_and_json_bodies_of_the_same_values_write_the_same_commands(
    values: list[Any],
) -> None:
    as_json = orjson.dumps(body_of(values, single=False))
    as_msgpack = msgpack.packb(body_of(values, single=False))
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        from_json = written(layout, decode_envelopes(as_json, JSON), as_json)
        assert from_json == written(layout, decode_envelopes(as_msgpack, MSGPACK), as_msgpack)
        assert from_json == published(layout, as_msgpack, MSGPACK)


@settings(max_examples=200, deadline=None)
@given(values=batches)
def test_the_jobfirst_message_is_the_reference_message_json(values: list[Any]) -> None:
    for body, kind in (
        (orjson.dumps(body_of(values, single=False)), JSON),
        (msgpack.packb(body_of(values, single=False)), MSGPACK),
    ):
        layout = TopicLayout("orders", TopicConfig())
        encoded = layout.encode(decode_envelopes(body, kind), ids_for(len(values)), AT)
        starts = [0, *encoded.ends[:-1]]
        stored = [
            fields_of(encoded.blob[start:end])[1][b"data"]
            for start, end in zip(starts, encoded.ends, strict=True)
        ]
        reference = [
            message_json(
                message_id, "orders", value, headers=None, metadata=None, timestamp=AT.rfc3339
            )
            for message_id, value in zip(ids_for(len(values)), values, strict=True)
        ]
        assert stored == reference


@settings(max_examples=200, deadline=None)
@given(values=batches)
def test_dapr_single_and_bulk_publishes_write_the_same_commands(values: list[Any]) -> None:
    singles: list[Envelope] = []
    for value in values:
        event = orjson.dumps(value)
        singles.append((None, dapr_data(event, JSON), dapr_headers({}, JSON), None))
    # A bulk event of a JSON type is the value itself, except that a string is JSON text.
    entries = [
        {"entryId": str(n), "event": orjson.dumps(v).decode() if isinstance(v, str) else v}
        | {"contentType": JSON}
        for n, v in enumerate(values)
    ]
    bulk_body = orjson.dumps(entries)
    bulk, _ = dapr_bulk_entries(decode_body(bulk_body, JSON), {})
    typed, _ = dapr_bulk_body(bulk_body, {})
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        expected = one_at_a_time(layout, singles)
        assert written(layout, bulk, bulk_body) == written(layout, typed, bulk_body) == expected


def test_data_only_msgpack_bodies_take_the_typed_path() -> None:
    body = msgpack.packb([{"data": {"n": 1}}, {"data": b"\x00"}])
    assert _data_only_msgpack_envelopes(body) == [
        (None, {"n": 1}, None, None),
        (None, b"\x00", None, None),
    ]
    # Anything else is left to the general path, which words the errors.
    for other in (
        msgpack.packb([{"data": 1, "id": "mine"}]),
        msgpack.packb([]),
        msgpack.packb({"data": 1}) + b"\x00",
        b"\xc1",
    ):
        assert _data_only_msgpack_envelopes(other) is None


def test_an_array_as_a_map_key_is_refused_on_both_msgpack_paths() -> None:
    # msgspec reads it as a tuple key, the general path refuses the body; no layout writes a
    # tuple key, so the request is a 400 either way.
    body = b"\x91\x81\xa4data\x81\x92\x01\x02\x01"  # [{"data": {[1, 2]: 1}}]
    with pytest.raises(BodyError) as general:
        decode_body(body, MSGPACK)
    assert general.value.status == 400
    envelopes = decode_envelopes(body, MSGPACK)
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        with pytest.raises(BodyError) as fast:
            layout.encode(envelopes, ids_for(1), AT)
        assert fast.value.status == 400 and fast.value.index == 0


@pytest.mark.parametrize("code", [-128, -16, -2])
def test_a_negative_extension_code_is_the_general_paths_400(code: int) -> None:
    # msgpack.ExtType refuses a code below 0 (the timestamp's -1 aside) with a ValueError; on
    # the typed path that must not escape as a crash (it did, as a 500).
    body = b"\x81\xa4data\xd5" + code.to_bytes(1, "big", signed=True) + b"ab"
    with pytest.raises(BodyError) as caught:
        decode_envelopes(body, MSGPACK)
    assert caught.value.status == 400
    assert "code must be 0~127" in caught.value.message


header_names = st.sampled_from(["content-type", "traceparent", "x-tenant", "data", "é<>"])
headers = st.none() | st.dictionaries(header_names, text, max_size=3)
metadata = st.none() | st.dictionaries(text, json_values, max_size=2)
envelopes = st.tuples(
    st.none() | st.sampled_from(["order-1", "order-2"]), json_values, headers, metadata
)


msgpack_envelopes = st.fixed_dictionaries(
    {"data": msgpack_values},
    optional={
        "id": st.sampled_from(["order-1", "order-2"]),
        "headers": st.dictionaries(header_names, text, max_size=3),
        "metadata": st.dictionaries(text, json_values, max_size=2),
    },
)


def outcome(body: bytes, kind: str, route: str) -> bytes | str:
    """What a route writes for a whole body in the jobfirst layout, or its error."""
    try:
        if route == "general":
            return one_at_a_time(
                TopicLayout("orders", TopicConfig()), envelopes_from(decode_body(body, kind))
            )
        return published(TopicLayout("orders", TopicConfig()), body, kind)
    except BodyError as error:
        return f"BodyError: {error}"


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(msgpack_envelopes, min_size=1, max_size=6), single=st.booleans())
def test_whole_msgpack_bodies_with_ids_headers_and_metadata_write_what_the_general_path_writes(
    entries: list[dict[str, Any]], single: bool
) -> None:
    # Data-only bodies go through the transcoder (when built), the others through the typed
    # or the general route; a body mixing both kinds of entries takes the general route.
    body = msgpack.packb(entries[0] if single else entries, datetime=True)
    assert outcome(body, MSGPACK, "fast") == outcome(body, MSGPACK, "general")


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(envelopes, min_size=1, max_size=6), scan_every_entry=st.booleans())
def test_batches_mixing_plain_entries_and_others_write_what_each_alone_writes(
    batch: list[Envelope], scan_every_entry: bool
) -> None:
    # Plain entries take the per-second template; the others (an id, headers, metadata) are
    # written one by one with the request's parts, made when the first of them comes. The
    # request body holds every envelope, so the request-wide escape check sees all of it.
    body = b"<" if scan_every_entry else orjson.dumps(batch)
    layout = TopicLayout("orders", TopicConfig())
    assert written(layout, batch, body) == one_at_a_time(layout, batch)


@settings(max_examples=100, deadline=None)
@given(values=batches)
def test_the_cached_template_follows_the_second(values: list[Any]) -> None:
    # One layout encodes requests of two seconds in turn; each must match a fresh layout's.
    layout = TopicLayout("orders", TopicConfig())
    envelopes_of = envelopes_from(decode_body(orjson.dumps(body_of(values, single=False)), JSON))
    ids = ids_for(len(values))
    for at in (AT, AcceptTime.at(AT.unix_ns + 1_000_000_000), AT):
        fresh = TopicLayout("orders", TopicConfig())
        expected = fresh.encode(envelopes_of, ids, at).blob
        assert layout.encode(envelopes_of, ids, at).blob == expected
        assert (
            fields_of(expected[: fresh.encode(envelopes_of, ids, at).ends[0]])[1][b"timestamp"]
            == at.unix_seconds
        )


cloudevents = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["ce-1", "ce-2", " bad id"]),
        "source": st.just("/orders"),
        "specversion": st.just("1.0"),
        "type": st.just("order.created"),
        "data": json_values,
    }
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(cloudevents, min_size=1, max_size=4))
def test_cloudevents_publish_the_same_single_and_bulk(events: list[dict[str, Any]]) -> None:
    kind = CLOUDEVENTS_JSON
    singles: list[Envelope] = []
    for event in events:
        data = dapr_data(orjson.dumps(event), kind)
        singles.append((cloudevent_id(data, kind), data, dapr_headers({}, kind), None))
    # With or without the content type named: Dapr's rule infers it from the four fields.
    for named in (True, False):
        entries = [
            {"entryId": str(n), "event": event} | ({"contentType": kind} if named else {})
            for n, event in enumerate(events)
        ]
        bulk_body = orjson.dumps(entries)
        bulk, _ = dapr_bulk_entries(decode_body(bulk_body, JSON), {})
        assert dapr_bulk_body(bulk_body, {})[0] == bulk  # CloudEvents are parsed on both
        assert [envelope[0] for envelope in bulk] == [
            event["id"] if event["id"] != " bad id" else None for event in events
        ]
        for layout_kind in LAYOUTS:
            layout = TopicLayout("orders", TopicConfig(layout=layout_kind))
            assert written(layout, bulk, bulk_body) == one_at_a_time(layout, singles)


# Entries with headers (and no id or metadata) are written from one command template per
# distinct headers set; these hold the templates to the layout's per-entry code and to
# `message_json`. Header names and values hold what the templates must escape: Go's
# characters in the JSON text, "%" in the template itself, a reserved field name (the entry's
# error), a lone surrogate (no JSON form: the whole request takes the per-entry code).
template_header_names = st.sampled_from(
    ["content-type", "traceparent", "x-tenant", "é<>", "x-%b", "%", "data"]
)
template_header_values = text | st.text(
    alphabet=st.sampled_from(["a", "b", "%", "<", "&", "é", "\u2028", "\\", "\ud800"]),
    max_size=6,
)
header_sets = st.dictionaries(template_header_names, template_header_values, min_size=1, max_size=3)
# An entry's headers: None, a fresh dict, or one of the request's shared dicts (by index).
headers_choice = st.none() | header_sets | st.integers(min_value=0, max_value=2)
templated_entries = st.tuples(
    st.none() | st.sampled_from(["order-1"]),
    json_values,
    headers_choice,
    st.none() | st.dictionaries(text, json_values, max_size=1),
)


def with_shared_headers(
    entries: list[tuple[Any, ...]], shared: list[dict[str, str]], raw_data: bool
) -> list[Envelope]:
    """The envelopes, an integer headers choice replaced by that shared dict (the same object
    in each entry that names it); `raw_data`: each `data` as its JSON text, as a JSON body's."""
    envelopes: list[Envelope] = []
    for given_id, data, choice, meta in entries:
        headers = shared[choice] if isinstance(choice, int) else choice
        value = msgspec.Raw(orjson.dumps(data)) if raw_data else data
        envelopes.append((given_id, value, headers, meta))
    return envelopes


def general_jobfirst(layout: TopicLayout, envelopes: list[Envelope], escape: bool) -> bytes | str:
    """The jobfirst layout's per-entry code for each entry: no batch texts, no templates."""
    parts = _JobfirstParts(layout, AT)
    ids = ids_for(len(envelopes))
    try:
        return b"".join(
            layout._jobfirst_command(index, envelope, ids[index], parts, escape)
            for index, envelope in enumerate(envelopes)
        )
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def reference_commands(layout: TopicLayout, envelopes: list[Envelope]) -> list[list[bytes]]:
    """Each entry's XADD arguments from `message_json` and the fields JobFirst reads (the ids
    are the intake's, which already holds a given id in its place)."""
    commands = []
    for (_, data, headers, metadata), message_id in zip(
        envelopes, ids_for(len(envelopes)), strict=True
    ):
        document = message_json(
            message_id,
            layout.topic,
            plain(data),
            headers=headers,
            metadata=metadata,
            timestamp=AT.rfc3339,
        )
        fields = [b"data", document, b"topic", layout.topic.encode(), b"timestamp"]
        fields.append(AT.unix_seconds)
        for name, value in (headers or {}).items():
            fields += [name.encode(), value.encode()]
        commands.append([b"XADD", layout.stream, b"*", *fields])
    return commands


def commands_of(encoded: EncodedEntries) -> list[list[bytes]]:
    starts = [0, *encoded.ends[:-1]]
    return [
        decode_command(encoded.blob[start:end])
        for start, end in zip(starts, encoded.ends, strict=True)
    ]


@settings(max_examples=400, deadline=None)
@given(
    entries=st.lists(templated_entries, min_size=1, max_size=8),
    shared=st.lists(header_sets, min_size=3, max_size=3),
    raw_data=st.booleans(),
    scan_every_entry=st.booleans(),
    key=st.sampled_from(["stream:{topic}", "s%b%%:{topic}"]),
)
def test_entries_with_headers_write_what_the_per_entry_code_and_message_json_write(
    entries: list[tuple[Any, ...]],
    shared: list[dict[str, str]],
    raw_data: bool,
    scan_every_entry: bool,
    key: str,
) -> None:
    envelopes = with_shared_headers(entries, shared, raw_data)
    try:
        body = orjson.dumps([entries, shared], default=str)  # what a request would hold
        escape = scan_every_entry or may_need_go_escape(body)
    except TypeError:  # a lone surrogate: no request body could hold these values
        escape = True
    layout = TopicLayout("orders", TopicConfig(key=key))
    general = general_jobfirst(layout, envelopes, escape)
    try:
        encoded = layout.encode(envelopes, ids_for(len(envelopes)), AT, escape=escape)
    except Exception as error:
        assert f"{type(error).__name__}: {error}" == general
        return
    assert encoded.blob == general
    assert commands_of(encoded) == reference_commands(layout, envelopes)


def test_a_shared_headers_dict_is_written_from_one_template() -> None:
    # Byte for byte as the per-entry code, with every entry's own id and data.
    headers = {"content-type": "application/json", "x-note": "a%b<c"}
    envelopes: list[Envelope] = [(None, {"n": n}, headers, None) for n in range(3)]
    layout = TopicLayout("orders", TopicConfig())
    encoded = layout.encode(envelopes, ids_for(3), AT)
    assert encoded.blob == general_jobfirst(layout, envelopes, True)
    stored = [command[4] for command in commands_of(encoded)]
    assert [orjson.loads(document)["data"] for document in stored] == [{"n": n} for n in range(3)]
    assert b'"x-note":"a%b\\u003cc"' in stored[0]


def test_a_reserved_header_names_the_first_entry_that_has_it() -> None:
    clash = {"topic": "mine"}
    envelopes: list[Envelope] = [
        (None, 1, {"x": "y"}, None),
        (None, 2, clash, None),
        (None, 3, clash, None),
    ]
    with pytest.raises(BodyError) as refused:
        TopicLayout("orders", TopicConfig()).encode(envelopes, ids_for(3), AT)
    assert refused.value.index == 1
    assert "header 'topic' clashes with a jobfirst field" in refused.value.message


bulk_kinds = st.sampled_from(
    [JSON, "text/plain", "application/octet-stream", "application/vnd.api+json", None]
)
bulk_entries = st.tuples(
    json_values, bulk_kinds, st.none() | st.dictionaries(template_header_names, text, max_size=2)
)
queries = st.dictionaries(
    st.sampled_from(["metadata.ttl", "metadata.x-%", "ack", "metadata.data"]), text, max_size=2
)


def bulk_outcome(body: bytes, query: dict[str, str], *, typed: bool) -> Any:
    try:
        if typed:
            return dapr_bulk_body(body, query)
        return dapr_bulk_entries(decode_body(body, JSON), query)
    except BodyError as error:
        return (error.status, error.code, error.message, error.index)


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(bulk_entries, min_size=1, max_size=8), query=queries)
def test_dapr_bulk_bodies_write_what_the_general_path_and_each_entry_alone_write(
    entries: list[tuple[Any, str | None, dict[str, str] | None]], query: dict[str, str]
) -> None:
    body = orjson.dumps(
        [
            {"entryId": str(n), "event": value}
            | ({"contentType": kind} if kind else {})
            | ({"metadata": meta} if meta is not None else {})
            for n, (value, kind, meta) in enumerate(entries)
        ]
    )
    fast = bulk_outcome(body, query, typed=True)
    general = bulk_outcome(body, query, typed=False)
    if not isinstance(general[0], list):
        assert fast == general  # the same refusal, naming the same entry
        return
    (bulk, entry_ids), (general_bulk, general_ids) = fast, general
    assert entry_ids == general_ids
    # Entries of one content type without metadata of their own hold one headers dict.
    by_kind: dict[str, dict[str, str] | None] = {}
    for (_, _, headers, _), (_, _, meta) in zip(bulk, entries, strict=True):
        if not meta and headers is not None:
            kind = headers["content-type"]
            assert by_kind.setdefault(kind, headers) is headers
    escape = bool(query) or may_need_go_escape(body)
    for kind in LAYOUTS:
        layout = TopicLayout("orders", TopicConfig(layout=kind))
        expected = one_at_a_time(layout, general_bulk)
        assert written_with(layout, bulk, escape) == expected
        assert written_with(layout, general_bulk, escape) == expected
    layout = TopicLayout("orders", TopicConfig())
    assert written_with(layout, bulk, escape) == general_jobfirst(layout, general_bulk, True)


def written_with(layout: TopicLayout, envelopes: list[Envelope], escape: bool) -> bytes | str:
    try:
        return layout.encode(envelopes, ids_for(len(envelopes)), AT, escape=escape).blob
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def test_a_bulk_json_event_is_kept_as_sent_and_others_are_parsed() -> None:
    body = (
        b'[{"entryId": "1", "event": {"a": 1.0e0}, "contentType": "application/json"},'
        b' {"entryId": "2", "event": "{\\"b\\": 2}", "contentType": "application/json"},'
        b' {"entryId": "3", "event": "text", "contentType": "text/plain"},'
        b' {"entryId": "4", "event": [1], "metadata": {"x": "y"}}]'
    )
    envelopes, entry_ids = dapr_bulk_body(body, {"metadata.ttl": "60"})
    assert entry_ids == ["1", "2", "3", "4"]
    kept, parsed_json, text_event, inferred = envelopes
    assert kept[1] == msgspec.Raw(b'{"a": 1.0e0}')  # the client's spelling, as the JSON route
    assert parsed_json[1] == {"b": 2} and text_event[1] == "text" and inferred[1] == [1]
    assert kept[2] is parsed_json[2]  # one headers dict for the content type
    assert kept[2] == {"ttl": "60", "content-type": "application/json"}
    assert inferred[2] == {"ttl": "60", "x": "y", "content-type": "application/json"}


@pytest.mark.parametrize(
    "body",
    [
        # Entry 0's event is bad JSON text and its metadata a bad header: the event is named.
        b'[{"entryId": "1", "event": "{", "contentType": "application/json",'
        b' "metadata": {"h": 1}}]',
        b'[{"entryId": "1", "event": 1, "contentType": "application/json"},'
        b' {"entryId": "", "event": 2}]',
        b'[{"entryId": "1", "event": "\\ud800", "contentType": "text/plain"}]',
        b'[{"entryId": "1", "event": 1e400, "contentType": "application/json"}]',
        b"[]",
    ],
    ids=["event-first", "empty-id", "lone-surrogate", "overflow", "empty"],
)
def test_a_bad_bulk_body_gets_the_general_paths_answer(body: bytes) -> None:
    general = bulk_outcome(body, {}, typed=False)
    assert isinstance(general, tuple) and general[0] == 400
    assert bulk_outcome(body, {}, typed=True) == general
