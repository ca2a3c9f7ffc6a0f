"""The C msgpack → JSON transcoder (agent/messages/msgpackjson.c) against the general path.

Each `data` text it writes must be the bytes the general path stores for the same body: msgspec
decodes the value, orjson writes it (`BatchTexts`, as the layout calls it), and Go's characters
are escaped (`go_escape`). What it does not handle it must decline (None), never answer wrongly
or crash: the codec then takes the typed or the general route, which words the errors. These
tests need the native build; without it (pure Python, `SIDECAR_AGENT_NATIVE=off` or no build)
the module is the pure twin that declines everything, and the codec's tests
(test_paths_agree.py) cover that route.
"""

from __future__ import annotations

import ctypes
import math
import random
import struct
from typing import Any

import msgpack
import msgspec
import orjson
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from agent import native
from agent.messages import msgpackjson
from agent.messages.batchtexts import BatchTexts
from agent.messages.bodystructs import DATA_ONLY_MSGPACK, DataOnlyValue
from agent.messages.codec import MAX_BATCH_ENTRIES
from agent.messages.message import go_escape

pytestmark = pytest.mark.skipif(
    not native.compiled(msgpackjson),
    reason="the C transcoder is part of the native build, which is not loaded here "
    f"({native.STATUS.describe()})",
)

LIMIT = MAX_BATCH_ENTRIES
MAX_DEPTH = 32  # as in the C source
MAX_MAP_KEYS = 64


def general_texts(body: bytes) -> list[bytes] | None:
    """What the general path writes for each `data` of a data-only body, or None when the
    typed route does not take the body or a value has no JSON form."""
    try:
        value = DATA_ONLY_MSGPACK.decode(body)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    items = [value] if isinstance(value, DataOnlyValue) else value
    envelopes = [(None, item.data, None, None) for item in items]
    texts = BatchTexts.of(envelopes, escape=False)
    if texts is None:
        return None
    return [go_escape(bytes(text)) for text in texts.texts]


def transcoded(body: bytes, limit: int = LIMIT) -> list[bytes] | None:
    texts = msgpackjson.data_texts(body, limit)
    if texts is None:
        return None
    assert all(type(text) is msgspec.Raw for text in texts)
    return [bytes(text) for text in texts]


def agrees(body: bytes) -> list[bytes] | None:
    """The transcoder's texts, checked against the general path's when it handles the body."""
    got = transcoded(body)
    if got is not None:
        assert got == general_texts(body)
    return got


def handled(value: Any, depth: int = 1) -> bool:
    """Whether a value is inside the subset the transcoder promises to handle."""
    kind = type(value)
    if value is None or kind in (bool, int):
        return True
    if kind is float:
        return math.isfinite(value) and "e-05" not in repr(value)
    if kind is str:
        return True
    if kind is list:
        return depth <= MAX_DEPTH and all(handled(item, depth + 1) for item in value)
    if kind is dict:
        return (
            depth <= MAX_DEPTH
            and len(value) <= MAX_MAP_KEYS
            and all(type(key) is str for key in value)
            and all(handled(item, depth + 1) for item in value.values())
        )
    return False


def data_body(values: list[Any], *, single: bool, **pack: Any) -> bytes:
    envelopes = {"data": values[0]} if single else [{"data": value} for value in values]
    return msgpack.packb(envelopes, datetime=True, **pack)


text = st.text(
    alphabet=st.sampled_from(["a", "\\", '"', "/", "<", "&", "é", "\u2028", "\x00", "\x1f", "\x7f"])
    | st.characters(codec="utf-8"),
    max_size=12,
)
floats = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(width=32, allow_nan=False, allow_infinity=False)
    | st.decimals(places=3, min_value=-(10**9), max_value=10**9, allow_nan=False).map(float)
    | st.sampled_from([-0.0, 0.0, 1e16, 1e15, 1e-7, 1e-5, 1e-4, 5e-324, 1.7976931348623157e308])
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | floats
    | text
    | st.binary(max_size=4)
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
)
keys = text | st.integers(-3, 3) | st.binary(max_size=2) | st.none()
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(sent=st.lists(values, min_size=1, max_size=6), single=st.booleans(), f32=st.booleans())
def test_each_data_text_is_what_the_general_path_writes(
    sent: list[Any], single: bool, f32: bool
) -> None:
    try:
        body = data_body(sent, single=single, use_single_float=f32)
    except OverflowError:  # a float64 too large for float32
        reject()
    got = agrees(body)
    decoded = msgpack.unpackb(body, strict_map_key=False, timestamp=3)
    entries = [decoded] if single else decoded
    if all(handled(entry["data"]) for entry in entries):
        assert got is not None, "a body inside the subset must be handled"


json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | floats | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(sent=st.lists(json_values, min_size=1, max_size=6), single=st.booleans())
def test_values_json_can_hold_are_handled_as_the_general_path_writes_them(
    sent: list[Any], single: bool
) -> None:
    body = data_body(sent, single=single)
    got = agrees(body)
    if all(handled(value) for value in (sent[:1] if single else sent)):
        assert got is not None


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64))
def test_any_bytes_are_handled_as_the_general_path_or_declined(body: bytes) -> None:
    agrees(body)


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(values, min_size=1, max_size=3), cut=st.integers(0, 10**6))
def test_a_body_cut_short_or_with_bytes_after_it_is_declined(sent: list[Any], cut: int) -> None:
    body = data_body(sent, single=False)
    assert transcoded(body[: cut % len(body)]) is None
    assert transcoded(body + b"\xc0") is None


def test_every_prefix_of_a_body_is_declined() -> None:
    body = data_body([{"a": [1, 2.5, "x", None, True], "é": {"k": -70000}}, "s" * 40], single=False)
    assert agrees(body) is not None
    for end in range(len(body)):
        assert transcoded(body[:end]) is None


INTS = [
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
]


@pytest.mark.parametrize("value", INTS)
def test_every_int_width_and_boundary(value: int) -> None:
    assert agrees(data_body([value], single=True)) == [str(value).encode()]


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\xcc\x05", 5),
        (b"\xcd\x00\x05", 5),
        (b"\xce\x00\x00\x00\x05", 5),
        (b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05", 5),
        (b"\xd0\x05", 5),
        (b"\xd0\xff", -1),
        (b"\xd1\xff\xfe", -2),
        (b"\xd2\xff\xff\xff\xfd", -3),
        (b"\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 7),
        (b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", -(2**63)),
    ],
)
def test_ints_in_wider_forms_than_needed(encoded: bytes, value: int) -> None:
    assert agrees(b"\x81\xa4data" + encoded) == [str(value).encode()]


@pytest.mark.parametrize(
    "value",
    [
        -0.0,
        0.0,
        0.1,
        42.5,
        -19.99,
        0.001,
        0.125,
        1e15,
        1e16,
        1e22,
        123456789012.345,
        2.0**40,
        2.0**40 - 0.5,
        1e-4,
        1e-7,
        1.5e-10,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        0.30000000000000004,
    ],
)
@pytest.mark.parametrize("single", [False, True], ids=["float64", "float32"])
def test_floats_read_as_orjson_writes_them(value: float, single: bool) -> None:
    as_sent = ctypes.c_float(value).value if single else value  # float32: may round to inf
    spelled = b"\xca" + struct.pack(">f", as_sent) if single else b"\xcb" + struct.pack(">d", value)
    negative = bytes([spelled[0], spelled[1] ^ 0x80]) + spelled[2:]
    got = agrees(b"\x92\x81\xa4data" + spelled + b"\x81\xa4data" + negative)
    if not math.isfinite(as_sent) or "e-05" in repr(as_sent):
        assert got is None
    else:
        assert got == [orjson.dumps(as_sent), orjson.dumps(-as_sent)]


@pytest.mark.parametrize("value", [1e-5, 1.5e-5, 9.99e-5, -2e-5])
def test_floats_orjson_spells_unlike_repr_are_declined(value: float) -> None:
    assert transcoded(data_body([value], single=True)) is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("single", [False, True], ids=["float64", "float32"])
def test_nan_and_infinities_are_declined(value: float, single: bool) -> None:
    body = data_body([1, {"x": [value]}], single=False, use_single_float=single)
    assert transcoded(body) is None


def test_many_floats_read_as_orjson_writes_them() -> None:
    # Random bit patterns (every exponent) and short decimals (the fast path's cases).
    rng = random.Random(11)
    sent: list[float] = []
    while len(sent) < 20_000:
        bits = rng.getrandbits(64)
        candidates = [
            struct.unpack("<d", struct.pack("<Q", bits))[0],
            round(rng.uniform(-1e6, 1e6), rng.randint(0, 4)),
            rng.randint(-(10**13), 10**13) / 10 ** rng.randint(0, 4),
        ]
        sent.extend(x for x in candidates if math.isfinite(x) and "e-05" not in repr(x))
    body = data_body(sent, single=False)
    assert agrees(body) == [orjson.dumps(x) for x in sent]
    singles = [struct.unpack("<f", struct.pack("<I", rng.getrandbits(32)))[0] for _ in sent]
    kept = [x for x in singles if math.isfinite(x) and "e-05" not in repr(x)]
    body = data_body(kept, single=False, use_single_float=True)
    assert agrees(body) == [orjson.dumps(x) for x in kept]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        '"quoted" \\ back/slash',
        "".join(map(chr, range(0x20))) + "\x7f",
        "é ü 中文 \u2028\u2029 <>& \u2027\u202a \u0080",
        "\U0001f600 \U00010000 \U0010ffff",
        "\ufffd\ufeff",
        "x" * 70_000,  # str32
        "y" * 300,  # str16
        "z" * 40,  # str8
    ],
)
def test_strings_are_escaped_as_orjson_escapes_them(value: str) -> None:
    body = data_body([value, {value: value}], single=False)
    expected = [orjson.dumps(value), orjson.dumps({value: value})]
    assert agrees(body) == [go_escape(text) for text in expected]


@pytest.mark.parametrize(
    "utf8",
    [
        b"\xed\xa0\x80",  # a lone high surrogate (U+D800)
        b"\xed\xbf\xbf",  # a lone low surrogate (U+DFFF)
        b"\xed\xa0\xbd\xed\xb8\x80",  # a surrogate pair spelled in UTF-8
        b"\xc0\x80",  # overlong NUL
        b"\xe0\x80\xaf",  # overlong /
        b"\xf0\x80\x80\xaf",  # overlong /
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xff",
        b"\x80",
        b"a\xc3",  # cut inside a character
        b"\xe2\x82",
        b"\xf0\x9f\x98",
    ],
)
@pytest.mark.parametrize("where", ["value", "key"])
def test_invalid_utf8_is_declined(utf8: bytes, where: str) -> None:
    text = b"\xd9" + bytes([len(utf8)]) + utf8
    body = b"\x81\xa4data" + (text if where == "value" else b"\x81" + text + b"\x01")
    assert transcoded(body) is None
    with pytest.raises(msgspec.DecodeError):
        DATA_ONLY_MSGPACK.decode(body)  # and the typed route refuses it too


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\xa1a\x01\xa1a\x02",  # a repeated key
        b"\x83\xa1a\x01\xa1b\x02\xa1a\x03",
        b"\x81\x01\x02",  # an int key
        b"\x81\xc4\x01a\x01",  # a bin key
        b"\x81\xc0\x01",  # a nil key
        b"\xc4\x01a",  # bin
        b"\xd6\xff\x00\x00\x00\x00",  # a timestamp
        b"\xd4\x01\x00",  # an extension type
        b"\xc1",  # never used
    ],
)
def test_what_has_no_single_json_text_is_declined(data: bytes) -> None:
    assert transcoded(b"\x81\xa4data" + data) is None


def test_repeated_keys_count_per_map() -> None:
    same_keys_apart = {"a": {"a": 1, "b": {"a": 2}}, "b": [{"a": 3}, {"a": 4}]}
    assert agrees(data_body([same_keys_apart], single=True)) == [orjson.dumps(same_keys_apart)]


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_nesting_up_to_the_bound_is_handled_and_deeper_is_declined() -> None:
    assert agrees(data_body([nested(MAX_DEPTH)], single=True)) is not None
    assert transcoded(data_body([nested(MAX_DEPTH + 1)], single=True)) is None
    assert transcoded(b"\x81\xa4data" + b"\x91" * 100_000 + b"\x01") is None


def test_maps_up_to_the_key_bound_are_handled() -> None:
    wide = {f"k{n}": n for n in range(MAX_MAP_KEYS)}
    assert agrees(data_body([wide], single=True)) == [orjson.dumps(wide)]
    wider = {f"k{n}": n for n in range(MAX_MAP_KEYS + 1)}
    assert transcoded(data_body([wider], single=True)) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x90",  # no envelopes
        b"\x80",  # an envelope without data
        b"\x82\xa4data\x01\xa2id\xa1x",  # another key
        b"\x81\xa4date\x01",
        b"\x81\x01\x01",
        b"\xde\x00\x01\xa4data\x01",  # map16 envelope: left to the typed route
        b"\x91\x01",
        b"\x01",
        b"\xdd\xff\xff\xff\xff\x81\xa4data\x01",  # a count the body cannot hold
    ],
)
def test_bodies_of_another_shape_are_declined(body: bytes) -> None:
    assert transcoded(body) is None


def test_arrays_of_every_header_width() -> None:
    for count in (1, 15, 16, 300):
        body = msgpack.packb([{"data": n} for n in range(count)])
        assert agrees(body) == [str(n).encode() for n in range(count)]
    body = b"\xdd\x00\x00\x00\x02" + b"\x81\xa4data\x01" * 2
    assert agrees(body) == [b"1", b"1"]
    assert transcoded(b"\xdc\x00\x02" + b"\x81\xa4data\x01" * 2) == [b"1", b"1"]


def test_the_entry_limit_is_kept() -> None:
    body = msgpack.packb([{"data": n} for n in range(10)])
    assert transcoded(body, limit=10) is not None
    assert transcoded(body, limit=9) is None


def test_wrong_argument_types_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        msgpackjson.data_texts("text", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        msgpackjson.data_texts(b"\x81\xa4data\x01")  # type: ignore[call-arg]
