from __future__ import annotations

import msgpack
import orjson
import pytest

from agent.config.tree import TopicConfig
from agent.messages.codec import BodyError, Envelope, decode_envelopes
from agent.messages.layout import TopicLayout, dead_letter_message, fields_of
from agent.messages.message import AcceptTime, message_json
from agent.messages.redis.resp import decode_command

AT = AcceptTime.at(1_732_806_245_500_000_000)


def commands(layout: TopicLayout, envelopes: list[Envelope], ids: list[str]) -> list[list[bytes]]:
    encoded = layout.encode(envelopes, ids, AT)
    starts = [0, *encoded.ends[:-1]]
    return [decode_command(encoded.blob[a:b]) for a, b in zip(starts, encoded.ends, strict=True)]


def test_jobfirst_fields_are_what_the_go_publisher_writes() -> None:
    layout = TopicLayout("orders", TopicConfig())
    (plain, with_headers) = commands(
        layout,
        [(None, {"n": 1}, None, None), (None, "x", {"trace": "t1", "h2": "v2"}, {"m": 1})],
        ["id-1", "id-2"],
    )
    assert plain[:3] == [b"XADD", b"stream:orders", b"*"]
    assert plain[3::2] == [b"data", b"topic", b"timestamp"]
    assert plain[6] == b"orders" and plain[8] == b"1732806245"
    message = orjson.loads(plain[4])
    assert list(message) == [
        "id",
        "topic",
        "data",
        "headers",
        "metadata",
        "timestamp",
        "retry_count",
    ]
    assert message["timestamp"] == "2024-11-28T15:04:05.5Z"
    assert with_headers[9:] == [b"trace", b"t1", b"h2", b"v2"]
    assert orjson.loads(with_headers[4])["headers"] == {"trace": "t1", "h2": "v2"}


def test_key_template_and_maxlen() -> None:
    layout = TopicLayout("a.b", TopicConfig(key="app:{topic}:events", maxlen=1000))
    (command,) = commands(layout, [(None, 1, None, None)], ["i"])
    assert command[:6] == [b"XADD", b"app:a.b:events", b"MAXLEN", b"~", b"1000", b"*"]


def test_fields_layout() -> None:
    layout = TopicLayout("t", TopicConfig(layout="fields"))
    data = {"s": "text", "n": 2, "o": {"x": [1]}}
    encoded = layout.encode([(None, data, {"h": "v"}, None)], ["m-1"], AT)
    stream, fields = fields_of(encoded.blob)
    assert stream == b"stream:t"
    assert list(fields) == [b"message_id", b"s", b"n", b"o", b"h"]
    assert fields == {
        b"message_id": b"m-1",
        b"s": b"text",
        b"n": b"2",
        b"o": b'{"x":[1]}',
        b"h": b"v",
    }


@pytest.mark.parametrize(
    ("envelope", "words"),
    [
        ((None, [1], None, None), "non-empty object"),
        ((None, {"message_id": 1}, None, None), "reserved"),
        ((None, {"a": 1}, {"a": "v"}, None), "given twice"),
    ],
)
def test_fields_layout_refusals(envelope: Envelope, words: str) -> None:
    layout = TopicLayout("t", TopicConfig(layout="fields"))
    with pytest.raises(BodyError, match=words):
        layout.encode([envelope], ["i"], AT)


def test_raw_layout_is_one_body_field() -> None:
    layout = TopicLayout("t", TopicConfig(layout="raw"))
    blobs = [
        layout.encode([(None, data, {"h": "v"}, None)], ["i"], AT).blob
        for data in ("é", b"\x00", {"a": 1})
    ]
    assert [fields_of(blob)[1] for blob in blobs] == [
        {b"body": "é".encode()},
        {b"body": b"\x00"},
        {b"body": b'{"a":1}'},
    ]


@pytest.mark.parametrize("name", ["data", "topic", "timestamp"])
def test_jobfirst_headers_cannot_shadow_the_layout_fields(name: str) -> None:
    layout = TopicLayout("t", TopicConfig())
    with pytest.raises(BodyError, match=f"entry 1: header '{name}' clashes") as caught:
        layout.encode([(None, 1, None, None), (None, 1, {name: "x"}, None)], ["a", "b"], AT)
    assert caught.value.index == 1


def test_unwritable_values_are_entry_errors() -> None:
    layout = TopicLayout("t", TopicConfig())
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(BodyError, match="entry 0: data cannot be written as JSON"):
        layout.encode([(None, deep, None, None)], ["a"], AT)
    with pytest.raises(BodyError, match=r"entry 0: .*surrogate"):
        layout.encode([(None, 1, {"k": "\udcff"}, None)], ["a"], AT)


def test_injection_attempts_stay_data() -> None:
    layout = TopicLayout("t", TopicConfig(layout="raw"))
    sneaky = "v\r\n*1\r\n$8\r\nFLUSHALL\r\n"
    (command,) = commands(layout, [(None, sneaky, None, None)], ["i"])
    assert command == [b"XADD", b"stream:t", b"*", b"body", sneaky.encode()]


def test_dead_letter_messages_per_layout() -> None:
    jobfirst = TopicLayout("t", TopicConfig()).encode([(None, {"a": 1}, None, None)], ["i1"], AT)
    stored = fields_of(jobfirst.blob)[1][b"data"]
    assert dead_letter_message("jobfirst", "t", "i1", jobfirst.blob, AT.rfc3339) == stored
    fields = TopicLayout("t", TopicConfig(layout="fields")).encode(
        [(None, {"a": "1"}, None, None)], ["i2"], AT
    )
    rebuilt = orjson.loads(dead_letter_message("fields", "t", "i2", fields.blob, AT.rfc3339))
    assert rebuilt["id"] == "i2" and rebuilt["data"] == {"a": "1"}
    raw = TopicLayout("t", TopicConfig(layout="raw")).encode([(None, "hi", None, None)], ["i3"], AT)
    assert orjson.loads(dead_letter_message("raw", "t", "i3", raw.blob, AT.rfc3339))["data"] == "hi"


@pytest.mark.parametrize(
    "envelope",
    [
        (None, {"a": [1, {"b": None}], "<": "&"}, None, None),
        ("client id <1>", "text\u2028", {"h": "v", "x": "<"}, {"m": {"n": 1}}),
        (None, b"\x00\x01", None, {}),
        (None, None, {"only": "headers"}, None),
        (None, {1: "int key"}, None, None),
    ],
)
def test_the_hot_path_message_json_equals_the_reference(envelope: Envelope) -> None:
    message_id = envelope[0] or "msg_1_x"
    layout = TopicLayout("t.1", TopicConfig())
    for escape in (True, False):
        blob = layout.encode([envelope], [message_id], AT, escape=escape).blob
        reference = message_json(
            message_id,
            "t.1",
            envelope[1],
            headers=envelope[2],
            metadata=envelope[3],
            timestamp=AT.rfc3339,
            escape=escape,
        )
        assert fields_of(blob)[1][b"data"] == reference


@pytest.mark.parametrize(
    "data",
    [{"a": [1, {"b": None}], "<": "&"}, "text\u2028", 1.5, None, {"é": ["\u00e9", 2]}],
)
def test_raw_json_data_makes_the_same_message_as_the_parsed_value(data: object) -> None:
    # A compact body (what orjson, Go and most clients send) is stored byte for byte as the
    # reference Message JSON of the parsed value.
    (envelope,) = decode_envelopes(orjson.dumps({"data": data}), "application/json")
    layout = TopicLayout("t.1", TopicConfig())
    for escape in (True, False):
        blob = layout.encode([envelope], ["msg_1_x"], AT, escape=escape).blob
        reference = message_json(
            "msg_1_x",
            "t.1",
            data,
            headers=None,
            metadata=None,
            timestamp=AT.rfc3339,
            escape=escape,
        )
        assert fields_of(blob)[1][b"data"] == reference


@pytest.mark.parametrize(
    "extra",
    [("given", None, None), (None, {"traceparent": "00-1-2-01"}, None), (None, None, {"k": 1})],
)
def test_raw_json_data_beside_an_id_headers_or_metadata_is_the_parsed_values_message(
    extra: tuple[str | None, dict[str, str] | None, dict[str, object] | None],
) -> None:
    # Raw data leaves the plain road when the entry is not data only (a given id, the
    # tracer's traceparent header, metadata): the message is still the reference one.
    message_id, headers, metadata = extra
    (envelope,) = decode_envelopes(b'{"data":{"n":[1,2]}}', "application/json")
    given = (message_id, envelope[1], headers, metadata)
    blob = TopicLayout("t.1", TopicConfig()).encode([given], [message_id or "msg_1_x"], AT).blob
    reference = message_json(
        message_id or "msg_1_x",
        "t.1",
        {"n": [1, 2]},
        headers=headers,
        metadata=metadata,
        timestamp=AT.rfc3339,
    )
    assert fields_of(blob)[1][b"data"] == reference


def test_raw_json_data_keeps_the_clients_spelling() -> None:
    (envelope,) = decode_envelopes(b'{"data": {"b": 1,  "a": 1e5}}', "application/json")
    blob = TopicLayout("t", TopicConfig()).encode([envelope], ["i"], AT).blob
    stored = fields_of(blob)[1][b"data"]
    assert b'"data":{"b": 1,  "a": 1e5},"headers":null' in stored
    assert orjson.loads(stored)["data"] == {"b": 1, "a": 100000.0}


@pytest.mark.parametrize("kind", ["fields", "raw"])
def test_other_layouts_treat_raw_json_data_as_its_value(kind: str) -> None:
    layout = TopicLayout("t", TopicConfig(layout=kind))
    body = b'{"data": {"s": "text", "n": 2}}'
    (raw,) = decode_envelopes(body, "application/json")
    parsed = (None, orjson.loads(body)["data"], None, None)
    assert layout.encode([raw], ["i"], AT).blob == layout.encode([parsed], ["i"], AT).blob


def test_a_percent_sign_in_the_key_is_data_on_the_fast_path_too() -> None:
    layout = TopicLayout("t", TopicConfig(key="s:%d%%:{topic}"))
    envelopes = decode_envelopes(b'[{"data": 1}, {"data": "%s"}]', "application/json")
    fast = layout.encode(envelopes, ["a", "b"], AT, escape=False)
    general = layout.encode(envelopes, ["a", "b"], AT, escape=True)
    assert fast.blob == general.blob and fast.ends == general.ends
    assert [fields_of(fast.blob[: fast.ends[0]])[0]] == [b"s:%d%%:t"]


@pytest.mark.parametrize("key", [1, b"sku", ""])
def test_fields_layout_needs_string_keys_and_names_the_entry(key: object) -> None:
    layout = TopicLayout("t", TopicConfig(layout="fields"))
    envelopes: list[Envelope] = [(None, {"sku": 1}, None, None), (None, {key: 1}, None, None)]
    words = "^entry 1: the fields layout needs non-empty string keys in data$"
    with pytest.raises(BodyError, match=words) as caught:
        layout.encode(envelopes, ["a", "b"], AT)
    assert (caught.value.status, caught.value.code, caught.value.index) == (400, "invalid_entry", 1)


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("kind", ["fields", "raw"])
@pytest.mark.parametrize("value", [nested(300), msgpack.ExtType(5, b"\x01")], ids=["deep", "ext"])
def test_values_the_fields_and_raw_layouts_cannot_write_name_the_entry(
    kind: str, value: object
) -> None:
    layout = TopicLayout("t", TopicConfig(layout=kind))  # type: ignore[arg-type]
    data = {"v": value} if kind == "fields" else value
    envelopes: list[Envelope] = [(None, {"v": 1}, None, None), (None, data, None, None)]
    with pytest.raises(BodyError, match=r"^entry 1: value cannot be written as JSON") as caught:
        layout.encode(envelopes, ["a", "b"], AT)
    assert (caught.value.status, caught.value.code, caught.value.index) == (400, "invalid_entry", 1)
