from __future__ import annotations

import msgpack
import orjson
import pytest

from agent import native
from agent.messages import msgpackjson
from agent.messages.codec import (
    BODY_ROUTES,
    MAX_BATCH_ENTRIES,
    MAX_HEADERS,
    BodyError,
    decode_body,
    decode_envelopes,
    decode_publish_body,
    envelopes_from,
    media_type,
    plain,
)
from agent.messages.dapr import cloudevent_id, dapr_bulk_entries, dapr_data, dapr_headers


def error_of(call: object, *args: object) -> BodyError:
    with pytest.raises(BodyError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_json_syntax_errors_name_the_position() -> None:
    error = error_of(decode_body, b'{"data":\n  [1,2,}', "application/json")
    assert (error.status, error.code) == (400, "bad_body")
    assert "line 2 column" in error.message and "column 8 (byte 16)" in error.message


def test_msgpack_and_its_aliases_decode() -> None:
    body = msgpack.packb([{"data": {"n": 1}, "headers": {"h": "v"}}])
    for kind in ("application/msgpack", "application/x-msgpack"):
        assert decode_body(body, kind) == [{"data": {"n": 1}, "headers": {"h": "v"}}]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"\x81\xa4dat", "ends inside a value"),
        (b"\xc1", "invalid msgpack near byte"),
        (b"\xa2\xff\xfe", "utf-8"),  # invalid UTF-8 in a str
        (msgpack.packb({"data": 1}) + b"\x01", "1 extra bytes"),
        (b"\x91" * 2000 + b"\x01", "invalid msgpack"),  # nested deeper than the unpacker allows
    ],
)
def test_bad_msgpack_is_a_clear_400(body: bytes, words: str) -> None:
    error = error_of(decode_body, body, "application/msgpack")
    assert error.status == 400 and words in error.message


def test_unsupported_content_type_is_415() -> None:
    error = error_of(decode_body, b"x", "text/plain")
    assert (error.status, error.code) == (415, "unsupported_media_type")


def test_deep_json_nesting_is_a_400_not_a_crash() -> None:
    error = error_of(decode_body, b"[" * 5000 + b"]" * 5000, "application/json")
    assert error.status == 400 and "depth" in error.message


def test_media_type_drops_parameters_and_case() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"


def test_one_envelope_or_an_array() -> None:
    assert envelopes_from({"data": 1}) == [(None, 1, None, None)]
    batch = envelopes_from([{"data": None, "id": "a", "headers": {"k": "v"}, "metadata": {}}])
    assert batch == [("a", None, {"k": "v"}, {})]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "no messages"),
        ("x", "message object or an array"),
        ([{"data": 1}, 5], "entry 1: must be an object"),
        ([{"data": 1}, {"dat": 1}], 'entry 1: has no "data"'),
        ([{"data": 1, "extra": 2}], "entry 0: unknown key 'extra'"),
        ([{"data": 1, "id": ""}], "entry 0: id must be"),
        ([{"data": 1, "id": 7}], "entry 0: id must be"),
        ([{"data": 1, "metadata": []}], "metadata must be an object"),
        ([{"data": 1, "headers": []}], "headers must be an object"),
        ([{"data": 1, "headers": {"": "v"}}], "non-empty strings"),
        ([{"data": 1, "headers": {"k": 1}}], "header 'k' must be a string"),
        ([{"data": 1, "headers": {"k" * 300: "v"}}], "header name longer"),
        ([{"data": 1, "headers": {f"h{i}": "v" for i in range(MAX_HEADERS + 1)}}], "headers;"),
        ([{"data": 1, "headers": {"big": "x" * 70_000}}], "the limit is 65536"),
    ],
)
def test_bad_envelopes_name_their_index(value: object, words: str) -> None:
    error = error_of(envelopes_from, value)
    assert error.status == 400 and words in error.message
    if "entry" in words:
        assert error.index == int(words.split()[1].rstrip(":"))


def test_dapr_data_by_content_type() -> None:
    assert dapr_data(b'{"a":1}', "application/json") == {"a": 1}
    assert dapr_data(b"hello", "text/plain") == "hello"
    assert dapr_data(b"\xff\x00", "application/octet-stream") == b"\xff\x00"
    event = {"id": "ev-1", "source": "s", "specversion": "1.0", "type": "t", "data": {}}
    data = dapr_data(orjson.dumps(event), "application/cloudevents+json")
    assert data == event and cloudevent_id(data, "application/cloudevents+json") == "ev-1"
    assert cloudevent_id(data, "application/json") is None


def test_dapr_metadata_query_becomes_headers_with_the_content_type() -> None:
    headers = dapr_headers({"metadata.ttlInSeconds": "60", "ack": "disk"}, "application/json")
    assert headers == {"ttlInSeconds": "60", "content-type": "application/json"}


def test_dapr_bulk_entries() -> None:
    body = [
        {"entryId": "1", "event": "first", "contentType": "text/plain"},
        {"entryId": "2", "event": {"m": 2}, "contentType": "application/json"},
        {"entryId": "3", "event": {"m": 3}, "metadata": {"k": "v"}},
        {"entryId": "4", "event": '{"m": 4}', "contentType": "application/json"},
    ]
    envelopes, entry_ids = dapr_bulk_entries(body, {"metadata.q": "1"})
    assert entry_ids == ["1", "2", "3", "4"]
    assert [envelope[1] for envelope in envelopes] == ["first", {"m": 2}, {"m": 3}, {"m": 4}]
    assert envelopes[2][2] == {"q": "1", "k": "v", "content-type": "application/json"}
    assert envelopes[0][2] == {"q": "1", "content-type": "text/plain"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "non-empty array"),
        ([{"event": 1}], 'entry 0: needs an "entryId"'),
        ([{"entryId": "a"}], 'entry 0: has no "event"'),
        ([{"entryId": "a", "event": "{", "contentType": "application/json"}], "not valid JSON"),
    ],
)
def test_bad_dapr_bulk_bodies(body: object, words: str) -> None:
    error = error_of(dapr_bulk_entries, body, {})
    assert error.status == 400 and words in error.message


def test_data_only_bodies_keep_each_data_as_the_clients_json_text() -> None:
    body = b'[{"data": {"b": 1,  "a": [1.0, "x", 1e5]}}, {"data":"s"}, {"data": null}]'
    envelopes = decode_envelopes(body, "application/json")
    assert [bytes(envelope[1]) for envelope in envelopes] == [
        b'{"b": 1,  "a": [1.0, "x", 1e5]}',
        b'"s"',
        b"null",
    ]
    assert all(envelope[0] is None and envelope[2:] == (None, None) for envelope in envelopes)
    (single,) = decode_envelopes(b'{"data": {"n": 1}}', "application/json")
    assert bytes(single[1]) == b'{"n": 1}'


@pytest.mark.parametrize(
    "body",
    [
        b'[{"data": 1, "id": "given"}]',  # other keys: the general path
        b'{"data": 1, "headers": {"h": "v"}, "metadata": {}}',
        b'[{"data": "caf\xc3\xa9"}]',  # valid UTF-8, not ASCII
        b'[{"data": ' + b"[" * 300 + b"]" * 300 + b"}]",  # nests deeper than orjson writes
        b'[{"data": [1.5e300, 1e-400, "e123", 123456789012345678901234567890]}]',
    ],
)
def test_the_fast_path_and_the_general_path_agree(body: bytes) -> None:
    fast = decode_envelopes(body, "application/json")
    general = envelopes_from(decode_body(body, "application/json"))
    assert [(envelope[0], plain(envelope[1]), *envelope[2:]) for envelope in fast] == general


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'[{"data": "\xff"}]', "UTF-8"),  # msgspec would skip it inside data: checked first
        (b'[{"data": 1, "extra": 2}]', "entry 0: unknown key 'extra'"),
        (b'[{"data": 1}, {"dat": 1}]', 'entry 1: has no "data"'),
        (b"[]", "no messages"),
        (b'[{"data": [1,}]', "invalid JSON at line 1 column"),
        (b'{"data": "\\ud800"}', "invalid JSON"),
        (b'[{"data": 1}, {"data": {"n": 1e400}}]', "infinity"),  # no double holds it
        (b'{"data": -2E+309}', "infinity"),
        (b'{"data": ' + b"9" * 400 + b"}", "infinity"),
    ],
)
def test_bad_bodies_get_the_general_paths_precise_errors(body: bytes, words: str) -> None:
    error = error_of(decode_envelopes, body, "application/json")
    assert error.status == 400 and words in error.message


def test_a_batch_of_max_entries_is_taken_and_one_more_is_refused() -> None:
    at_limit = [{"data": 0}] * MAX_BATCH_ENTRIES
    body = orjson.dumps(at_limit)
    assert len(decode_envelopes(body, "application/json")) == MAX_BATCH_ENTRIES  # fast path
    assert len(envelopes_from(at_limit)) == MAX_BATCH_ENTRIES
    over = [*at_limit, {"data": 0}]
    words = f"{MAX_BATCH_ENTRIES + 1} messages in one request; the limit is {MAX_BATCH_ENTRIES}"
    for error in (
        error_of(decode_envelopes, orjson.dumps(over), "application/json"),
        error_of(decode_envelopes, msgpack.packb(over), "application/msgpack"),
    ):
        assert (error.status, error.code, error.index) == (400, "bad_body", None)
        assert error.message == words


def test_a_bulk_of_max_entries_is_taken_and_one_more_is_refused() -> None:
    at_limit = [{"entryId": "e", "event": 0}] * MAX_BATCH_ENTRIES
    envelopes, entry_ids = dapr_bulk_entries(at_limit, {})
    assert len(envelopes) == len(entry_ids) == MAX_BATCH_ENTRIES
    error = error_of(dapr_bulk_entries, [*at_limit, at_limit[0]], {})
    assert (error.status, error.code, error.index) == (400, "bad_body", None)
    assert f"{MAX_BATCH_ENTRIES + 1} entries in one request" in error.message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (["e-2"], "entry 1: must be an object, not an array"),
        ({"entryId": "e-2", "event": 2, "contentType": 7}, "entry 1: contentType must be a string"),
        ({"entryId": "e-2", "event": 2, "metadata": "k=v"}, "entry 1: metadata must be an object"),
    ],
)
def test_bad_dapr_bulk_entries_name_their_index(entry: object, words: str) -> None:
    error = error_of(dapr_bulk_entries, [{"entryId": "e-1", "event": 1}, entry], {})
    assert (error.status, error.code, error.index) == (400, "invalid_entry", 1)
    assert error.message == words


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"metadata.": "v"}, "header names must be non-empty strings"),
        ({"metadata." + "n" * 257: "v"}, "header name longer than 256 characters"),
        ({f"metadata.h{n}": "v" for n in range(MAX_HEADERS + 1)}, "headers; the limit is 64"),
    ],
)
def test_bad_dapr_metadata_query_parameters_are_entry_errors(
    query: dict[str, str], words: str
) -> None:
    error = error_of(dapr_headers, query, "application/json")
    assert (error.status, error.code, error.index) == (400, "invalid_entry", 0)
    assert words in error.message


def test_each_body_names_the_route_that_decoded_it() -> None:
    transcoded = "msgpack_transcoded" if native.compiled(msgpackjson) else "msgpack_typed"
    cases = [
        (b'[{"data": {"a": 1}}, {"data": 2}]', "application/json", "json_raw"),
        (b'{"data": 1, "id": "x"}', "application/json", "general"),
        (msgpack.packb([{"data": {"a": 1}}]), "application/msgpack", transcoded),
        (msgpack.packb({"data": b"\x00"}), "application/msgpack", "msgpack_typed"),
        (msgpack.packb({"data": 1, "id": "x"}), "application/msgpack", "msgpack_typed"),
    ]
    for body, kind, route in cases:
        decoded = decode_publish_body(body, kind)
        assert decoded.route == route and decoded.route in BODY_ROUTES, (body, kind)
        assert decoded.envelopes == decode_envelopes(body, kind)
