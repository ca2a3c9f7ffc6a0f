"""The direct path's decode of a JobFirst line: its bytes straight into a msgspec Struct whose
fields are the keys JobFirst's tracing writes plus the other keys this file's lines have been
seen to carry (`level`, `user_id`, ...: the span's attributes), learned from the lines the
general path read. One decode in C, no dict, no `JobFirstLine`.

Every field is typed as `parse_line` reads it (a string; `status` an integer; an attribute a
string or an integer, integers within int64, which orjson reads as integers too) and unknown
keys are refused, so a line with a key not learned yet, a null, a float, a nested value, a
number where a string belongs, or any fault is not read here: the caller parses it the
general way (orjson and `parse_line`), which reads it or names the fault, and learns its keys.
msgspec reads strings, escapes included, as orjson does (lone surrogates refused by both),
and a repeated key as orjson does (the last value). The Struct does not keep the order of the
keys; where a line has two attributes or more, their order (the general path's, the order of
their first appearance) is found by a search for each `"key":` — which, in a line the Struct
accepted, is that key (an escaped quote can only end a string that is an unknown key) — and a
key not found so (whitespace before its colon, an escaped letter) leaves the line to the
general path.
Bounded: at most `MAX_EXTRAS` learned keys per file, learned from at most `LEARN_LIMIT` lines.
tests/unit/spans/decode/test_direct_jobfirst.py holds the two paths to the same answers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from agent.spans.decode import jobfirst_scan
from agent.spans.decode.jobfirst_parse import CONSUMED
from agent.spans.model import Attributes

# A field the line does not have (msgspec's UNSET), bound once: a constant in compiled code.
MISSING: Final = UNSET
# Where `TypedLines.read` puts each consumed key: the Struct's fields are the consumed keys,
# sorted, then the learned ones (test_direct_jobfirst.py pins these to the Struct).
DURATION: Final = 0
EVENT_NAME: Final = 1
MESSAGE: Final = 2
MSG: Final = 3
SERVICE: Final = 4
SERVICE_NAME: Final = 5
SPAN_ID: Final = 6
SPAN_NAME: Final = 7
STATUS: Final = 8
STATUS_DESC: Final = 9
TIME: Final = 10
TIMESTAMP: Final = 11
TRACE_ID: Final = 12
FIRST_EXTRA: Final = 13
MAX_EXTRAS: Final = 16
LEARN_LIMIT: Final = 64
_PLAIN_KEY: Final = re.compile(r'[^"\\\x00-\x1f]+')  # a key JSON writes as it is
_INT64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# The consumed keys, typed as parse_line reads them.
# `message`, JobFirst's key, as one of the three span messages: msgspec then answers the
# Literal's own string (no string made and hashed per line); a line with another message
# does not fit, and the general path skips it, as it skips it anyway.
_MESSAGE = Literal["Span started", "Span event added", "Span ended"]
_FIELDS: Final[list[tuple[str, Any, Any]]] = [
    (key, (_INT64 if key == "status" else _MESSAGE if key == "message" else str) | UnsetType, UNSET)
    for key in sorted(CONSUMED)
]


_astuple: Final = msgspec.structs.astuple
_first_places_increase: Final = jobfirst_scan.first_places_increase  # bound: no lookup a call


def record_type(extras: list[str]) -> Any:
    """A Struct of the consumed keys and `extras` (as fields x0, x1, ...), all optional. Its
    fields are strings and integers only, so its instances stay out of the garbage
    collector's lists (`gc=False`)."""
    fields = _FIELDS + [
        (f"x{at}", str | _INT64 | UnsetType, msgspec.field(default=UNSET, name=key))
        for at, key in enumerate(extras)
    ]
    return msgspec.defstruct("JobFirstRecord", fields, forbid_unknown_fields=True, gc=False)


class TypedLines:
    """One file's decode: the Struct of the keys its lines have shown so far."""

    def __init__(self) -> None:
        self.extras: list[str] = []  # the attribute keys learned, in the order learned
        self._needles: dict[str, bytes] = {}
        self._decode = msgspec.json.Decoder(record_type([])).decode
        self._tries = 0

    def read(self, line: bytes) -> tuple[Any, ...]:
        """The line's fields in the Struct's order (`MESSAGE`, ..., then the learned keys from
        `FIRST_EXTRA`), `MISSING` where it has none; msgspec.DecodeError for a line the Struct
        does not fit. One tuple, indexed, instead of an attribute lookup per field."""
        values: tuple[Any, ...] = _astuple(self._decode(line))
        return values

    def attributes(self, values: tuple[Any, ...], line: bytes) -> Attributes | None:
        """The attributes of a line's `read` in the line's order, as `parse_line` reads them
        (a dict of its own: the assembler adds an end line's to its start line's); None to
        read the line the general way."""
        names = self.extras
        attributes: Attributes = {}
        for at in range(len(names)):  # indexed: a C loop when compiled, where zip is not
            value = values[FIRST_EXTRA + at]
            if value is not MISSING:
                attributes[names[at]] = value
        if len(attributes) < 2:
            return attributes
        needles = self._needles  # each first `"key":` after the one before: the line's order
        if _first_places_increase(line, [needles[key] for key in attributes]):
            return attributes
        return self._reordered(attributes, line)

    def _reordered(self, attributes: Attributes, line: bytes) -> Attributes | None:
        places = [line.find(self._needles[key]) for key in attributes]
        if -1 in places:  # whitespace before a colon, an escaped key: the general path's
            return None
        return dict(item for _, item in sorted(zip(places, attributes.items(), strict=True)))

    def learn(self, obj: dict[str, Any]) -> None:
        """Learn the keys of a line the general path read, so lines like it are read here."""
        if self._tries >= LEARN_LIMIT:
            return
        self._tries += 1
        new = [
            key
            for key, value in obj.items()
            if key not in CONSUMED
            and key not in self.extras
            and (type(value) is str or type(value) is int)
            and _PLAIN_KEY.fullmatch(key) is not None
        ]
        if not new or len(self.extras) + len(new) > MAX_EXTRAS:
            return
        self.extras += new
        self._needles = {key: b'"' + key.encode() + b'":' for key in self.extras}
        self._decode = msgspec.json.Decoder(record_type(self.extras)).decode
