from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.messages.message import (
    AcceptTime,
    MessageIds,
    go_escape,
    is_valid_message_id,
    may_need_go_escape,
    message_json,
    rfc3339_nano,
)

NS = 1_732_806_245_000_000_000  # 2024-11-28T15:04:05Z


def test_rfc3339_nano_trims_trailing_zeros_like_go() -> None:
    assert rfc3339_nano(NS + 123_456_789) == "2024-11-28T15:04:05.123456789Z"
    assert rfc3339_nano(NS + 120_000_000) == "2024-11-28T15:04:05.12Z"
    assert rfc3339_nano(NS) == "2024-11-28T15:04:05Z"
    assert rfc3339_nano(NS + 1) == "2024-11-28T15:04:05.000000001Z"


def test_accept_time_spellings() -> None:
    at = AcceptTime.at(NS + 5)
    assert (at.rfc3339, at.unix_seconds) == ("2024-11-28T15:04:05.000000005Z", b"1732806245")


def test_message_json_is_byte_for_byte_what_go_marshals() -> None:
    document = message_json(
        "msg_1",
        "orders",
        {"b": "<tag> & more", "a": [1, 2.5, None, True]},
        headers=None,
        metadata=None,
        timestamp="2024-11-28T15:04:05.12345Z",
    )
    # encoding/json output for the same Message (struct field order, nil maps as null,
    # HTML-sensitive characters escaped); data keys keep the publisher's order.
    assert document == (
        b'{"id":"msg_1","topic":"orders","data":{"b":"\\u003ctag\\u003e \\u0026 more",'
        b'"a":[1,2.5,null,true]},"headers":null,"metadata":null,'
        b'"timestamp":"2024-11-28T15:04:05.12345Z","retry_count":0}'
    )


def test_message_json_headers_metadata_and_bytes() -> None:
    document = message_json(
        "m",
        "t",
        b"\x00\xff",
        headers={"k": "v"},
        metadata={"n": 1},
        timestamp="2024-11-28T15:04:05Z",
        retry_count=2,
    )
    decoded = orjson.loads(document)
    assert decoded["data"] == "AP8="  # []byte → base64, as in Go
    assert decoded["headers"] == {"k": "v"} and decoded["metadata"] == {"n": 1}
    assert decoded["retry_count"] == 2


def test_go_escape_covers_line_separators_and_leaves_other_text() -> None:
    text = "a<b>&c\u2028d\u2029 é €"
    assert go_escape(text.encode()) == b"a\\u003cb\\u003e\\u0026c\\u2028d\\u2029 " + "é €".encode()
    assert go_escape(b"plain") == b"plain"


@given(
    st.recursive(
        st.text() | st.integers(-(2**63), 2**64 - 1) | st.none(),
        lambda kids: st.lists(kids, max_size=3),
    )
)
def test_a_body_without_markers_never_needs_escaping(data: object) -> None:
    body = orjson.dumps({"data": data})
    message = message_json("i", "t", orjson.loads(body), headers=None, metadata=None, timestamp="x")
    if not may_need_go_escape(body):
        assert go_escape(message) == message


def test_ids_are_unique_and_time_ordered_even_when_the_clock_stalls() -> None:
    ids = MessageIds(suffix="abcd")
    first = ids.make_many(3, 1000)
    second = ids.make_many(2, 1000)  # same clock reading: still later ids
    third = ids.make_many(1, 10)  # clock stepped back
    everything = first + second + third
    assert len(set(everything)) == 6
    assert everything == sorted(everything, key=lambda text: int(text.split("_")[1]))
    assert first[0] == "msg_1000_abcd"


def test_two_generators_never_collide() -> None:
    assert MessageIds().make_many(1, 5) != MessageIds().make_many(1, 5)


def test_valid_message_ids() -> None:
    assert is_valid_message_id("order-42:v1")
    for bad in ("", " x", "x ", "a\nb", "x" * 257, 42, None):
        assert not is_valid_message_id(bad)


def test_id_suffixes_need_no_escaping_anywhere() -> None:
    for suffix in ('a"b', "a b", "<x>", "é", ""):
        with pytest.raises(ValueError, match="suffix"):
            MessageIds(suffix=suffix)
    assert MessageIds(suffix="run_2").make(7) == "msg_7_run_2"


@given(st.binary(max_size=64) | st.text(alphabet="\\u<>&a\u2028é").map(str.encode))
def test_the_escape_scan_answers_as_a_search_for_every_marker(body: bytes) -> None:
    # The backslash is looked for first (one-byte search) and `\u` only then.
    markers = (b"<", b">", b"&", b"\xe2", b"\\u")
    assert may_need_go_escape(body) == any(marker in body for marker in markers)


def test_only_a_backslash_followed_by_u_counts_as_an_escape() -> None:
    assert may_need_go_escape(b'"\\u003c"')
    assert not may_need_go_escape(b'"\\n u\\"')
