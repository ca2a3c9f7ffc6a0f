"""How a message becomes one XADD, per topic: the stream key, MAXLEN and the fields.

Layouts (docs/http-api.md and README's "Message layout in Redis" say what consumers see):
  jobfirst  `data` = the Message JSON, `topic`, `timestamp` (unix seconds), then one field per
            header: what JobFirst's Go publisher writes and its consumers read.
  fields    `message_id`, then each top-level key of `data` (an object) as a field (strings
            as-is, other values as JSON), then the headers.
  raw       one field, `body`: a string's UTF-8, bytes as they came, anything else as JSON.

Commands are encoded here, once, when a request is accepted; the writer only concatenates
them. Everything in a command is a length-prefixed bulk string, so topic names, header names
and values can only ever be data.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import Any, NamedTuple

import orjson
from msgspec import Raw

from agent.config.tree import TopicConfig
from agent.messages.batchtexts import BatchTexts
from agent.messages.codec import Envelope, entry_error, plain
from agent.messages.message import (
    AcceptTime,
    dumps_json,
    encode_extra,
    go_escape,
    message_json,
)
from agent.messages.redis.resp import bulk, decode_command

RESERVED_FIELDS = {
    "jobfirst": frozenset({"data", "topic", "timestamp"}),
    "fields": frozenset({"message_id"}),
    "raw": frozenset(),
}
_FIELD_DATA = bulk(b"data")
_FIELD_TOPIC = bulk(b"topic")
_FIELD_TIMESTAMP = bulk(b"timestamp")
_FIELD_MESSAGE_ID = bulk(b"message_id")
_FIELD_BODY = bulk(b"body")
# What follows `data` in the Message JSON of an entry with no headers and no metadata, up to the
# accept time's text (RFC3339Nano: digits, "-", ":", "T", "." and "Z", nothing to escape).
_PLAIN_END = b',"headers":null,"metadata":null,"timestamp":"%b","retry_count":0}'


class EncodedEntries:
    """The XADD commands of one request, concatenated, with where each one ends; `stream` is
    set when the commands name a stream other than the layout's (a partitioned topic).

    A partitioned topic's commands come grouped by stream: `order[k]` is the request index of
    entry k (None: the request's own order) and `runs` the (stream, entry count) of each group,
    so a cluster writer routes a group, not each entry."""

    __slots__ = ("blob", "ends", "order", "runs", "stream")

    def __init__(
        self,
        blob: bytes,
        ends: list[int],
        stream: bytes | None = None,
        *,
        order: list[int] | None = None,
        runs: list[tuple[bytes, int]] | None = None,
    ) -> None:
        self.blob = blob
        self.ends = ends
        self.stream = stream
        self.order = order
        self.runs = runs


class _JobfirstParts:
    """The pieces of a jobfirst XADD that are the same for every entry of one request."""

    __slots__ = ("no_maps", "tail", "time_part")

    def __init__(self, layout: TopicLayout, at: AcceptTime) -> None:
        self.tail = layout._tail(at.unix_seconds)
        self.time_part = b',"timestamp":"' + at.rfc3339.encode() + b'","retry_count":0}'
        self.no_maps = b',"headers":null,"metadata":null' + self.time_part


class _CommandTemplate(NamedTuple):
    """`text % (document size, id, data)` is an entry's whole command; `size` is the length of
    the Message JSON besides its id and data."""

    text: bytes
    size: int


class _HeadersTemplates:
    """The command templates of one request's entries with headers (and no id or metadata),
    one per distinct headers set: by the dict's identity (Dapr's bulk route shares one dict
    per content type), else by its JSON text (equal headers in separate dicts)."""

    __slots__ = ("_at", "_by_object", "_by_text", "_escape", "_layout", "_parts", "_texts")

    def __init__(
        self, layout: TopicLayout, texts: BatchTexts, at: AcceptTime, escape: bool
    ) -> None:
        self._layout = layout
        self._texts = texts.headers
        self._escape = escape
        self._parts: _JobfirstParts | None = None
        self._at = at
        self._by_object: dict[int, _CommandTemplate] = {}
        self._by_text: dict[bytes, _CommandTemplate] = {}

    def get(self, index: int, headers: dict[str, str]) -> _CommandTemplate:
        """Raises BodyError naming entry `index` when a header clashes with a layout field."""
        template = self._by_object.get(id(headers))
        if template is None:
            text = bytes(self._texts[id(headers)])
            template = self._by_text.get(text)
            if template is None:
                template = self._make(index, headers, text)
                self._by_text[text] = template
            self._by_object[id(headers)] = template
        return template

    def _make(self, index: int, headers: dict[str, str], text: bytes) -> _CommandTemplate:
        layout = self._layout
        fields = layout._header_fields(index, headers)
        self._parts = self._parts or _JobfirstParts(layout, self._at)
        if self._escape:
            text = go_escape(text)
        rest = b',"headers":' + text + b',"metadata":null' + self._parts.time_part
        start = layout._start(3 + len(headers)) + _FIELD_DATA
        template = (
            start.replace(b"%", b"%%")
            + b'$%d\r\n{"id":"%b"'
            + layout._topic_part.replace(b"%", b"%%")
            + b"%b"
            + (rest + self._parts.tail + fields).replace(b"%", b"%%")
        )
        size = len(b'{"id":""') + len(layout._topic_part) + len(rest)
        return _CommandTemplate(template, size)


class TopicLayout:
    """One topic's layout, stream key and MAXLEN; `encode` turns envelopes into XADDs."""

    def __init__(self, topic: str, config: TopicConfig) -> None:
        self.topic = topic
        self.kind = config.layout
        self.stream = config.key.replace("{topic}", topic).encode()
        trim = [b"MAXLEN", b"~", str(config.maxlen).encode()] if config.maxlen else []
        head = [b"XADD", self.stream, *trim, b"*"]
        self._head_args = len(head)
        self._head = b"".join(bulk(arg) for arg in head)
        self._reserved = RESERVED_FIELDS[self.kind]
        self._topic_bytes = topic.encode()
        self._plain_start = self._start(3) + _FIELD_DATA
        self._topic_part = b',"topic":' + orjson.dumps(topic) + b',"data":'
        # The start of every plain jobfirst command, up to the data, as a %-template (the key
        # template may hold a "%"); _JobfirstParts appends what changes per request.
        self._plain_head = (
            self._plain_start.replace(b"%", b"%%")
            + b'$%d\r\n{"id":"%b"'
            + self._topic_part.replace(b"%", b"%%")
            + b"%b"
        )
        self._tail_cache: tuple[bytes, bytes] = (b"", b"")  # (unix seconds, tail)
        self._plain_cache: tuple[bytes, bytes] = (b"", b"")  # (unix seconds, template)
        # Message JSON bytes of a plain entry besides its id, data and accept time.
        self._plain_size = len(b'{"id":""') + len(self._topic_part) + len(_PLAIN_END % b"")

    def encode(
        self,
        envelopes: Sequence[Envelope],
        ids: Sequence[str],
        at: AcceptTime,
        *,
        escape: bool = True,
    ) -> EncodedEntries:
        """Raises BodyError naming the first entry that cannot be written. `escape=False`:
        the caller checked that no message can hold a character Go escapes."""
        if self.kind == "jobfirst":
            commands = self._jobfirst(envelopes, ids, at, escape)
        elif self.kind == "fields":
            commands = [self._fields(i, env, ids[i]) for i, env in enumerate(envelopes)]
        else:
            commands = [self._raw(i, env) for i, env in enumerate(envelopes)]
        return EncodedEntries(b"".join(commands), list(accumulate(map(len, commands))))

    def _start(self, field_count: int) -> bytes:
        return b"*%d\r\n" % (self._head_args + 2 * field_count) + self._head

    def _jobfirst(
        self, envelopes: Sequence[Envelope], ids: Sequence[str], at: AcceptTime, escape: bool
    ) -> list[bytes]:
        # The hot loop of a batch. The Message JSON is assembled around the data's JSON text:
        # the client's own when the codec kept it (msgspec.Raw), else written for the whole
        # batch in one orjson call (see agent.messages.batchtexts), and each entry without an
        # id or metadata is one formatting step of a template: the per-second one for entries
        # without headers, one per distinct headers set (made from the same orjson call) for
        # the others. The output is identical to `message_json` for the same values (unit
        # tests hold the paths together).
        texts = BatchTexts.of(envelopes, escape)
        if texts is None:  # some value cannot be written: each entry alone names the first
            every = _JobfirstParts(self, at)
            return [
                self._jobfirst_command(index, envelope, ids[index], every, escape)
                for index, envelope in enumerate(envelopes)
            ]
        plain = self._plain_template(at.unix_seconds)
        accepted = at.rfc3339.encode()
        size = self._plain_size + len(accepted)
        parts: _JobfirstParts | None = None  # made for the first entry that is not plain
        templates: _HeadersTemplates | None = None  # made for the first entry with headers
        escape_written = texts.escape_written
        commands: list[bytes] = []
        append = commands.append
        for index, envelope in enumerate(envelopes):
            given_id, _, headers, metadata = envelope
            if given_id is not None or metadata is not None:
                parts = parts or _JobfirstParts(self, at)
                append(self._jobfirst_command(index, envelope, ids[index], parts, escape))
                continue
            # Our id (plain ASCII, nothing to escape), the data's JSON, and fixed parts that
            # hold nothing Go escapes (a template's headers text is escaped once, when made).
            text = texts.texts[index]
            if escape_written if type(envelope[1]) is not Raw else escape:
                text = go_escape(bytes(text))
            message_id = ids[index].encode()
            if not headers:
                append(plain % (size + len(message_id) + len(text), message_id, text, accepted))
            else:
                templates = templates or _HeadersTemplates(self, texts, at, escape)
                template = templates.get(index, headers)
                size_of = template.size + len(message_id) + len(text)
                append(template.text % (size_of, message_id, text))
        return commands

    def _plain_template(self, unix_seconds: bytes) -> bytes:
        """`template % (document size, id, data, accept time)` is the whole command of a plain
        entry; it changes once a second (the timestamp field)."""
        if self._plain_cache[0] != unix_seconds:
            tail = self._tail(unix_seconds).replace(b"%", b"%%")
            template = self._plain_head + _PLAIN_END + tail  # its one "%" is the time's
            self._plain_cache = (unix_seconds, template)
        return self._plain_cache[1]

    def _jobfirst_command(
        self, index: int, envelope: Envelope, message_id: str, parts: _JobfirstParts, escape: bool
    ) -> bytes:
        _, data, headers, metadata = envelope
        dumps, option, fallback = orjson.dumps, orjson.OPT_NON_STR_KEYS, encode_extra
        try:
            # Raw or bytes, so Any and no conditional expression: msgspec's stubs call Raw a
            # bytes subclass, which it is not, and compiled with mypyc a value typed bytes
            # (as `raw if ... else dumped` is) refuses it.
            body: Any = data
            if type(data) is not Raw:
                body = dumps(data, default=fallback, option=option)
            if headers or metadata is not None:
                rest = b',"headers":%s,"metadata":%s' % (
                    dumps(headers or None),
                    dumps(metadata, default=fallback, option=option),
                )
                rest += parts.time_part
            else:
                rest = parts.no_maps
        except (orjson.JSONEncodeError, TypeError) as error:
            raise entry_error(index, f"data cannot be written as JSON: {_why(error)}") from None
        document: bytes = b'{"id":' + dumps(message_id) + self._topic_part + body + rest
        if escape:
            document = go_escape(document)
        size = b"$%d\r\n" % len(document)
        if headers:
            extra = self._header_fields(index, headers)
            start = self._start(3 + len(headers)) + _FIELD_DATA
            return start + size + document + parts.tail + extra
        return self._plain_start + size + document + parts.tail

    def _tail(self, unix_seconds: bytes) -> bytes:
        """What follows the Message JSON: the topic and timestamp fields (same all second)."""
        if self._tail_cache[0] != unix_seconds:
            tail = b"\r\n" + _FIELD_TOPIC + bulk(self._topic_bytes)
            self._tail_cache = (unix_seconds, tail + _FIELD_TIMESTAMP + bulk(unix_seconds))
        return self._tail_cache[1]

    def _fields(self, index: int, envelope: Envelope, message_id: str) -> bytes:
        _, raw_or_value, headers, _ = envelope
        data = plain(raw_or_value)
        if not isinstance(data, dict) or not data:
            raise entry_error(index, "the fields layout needs data to be a non-empty object")
        parts = [_FIELD_MESSAGE_ID, bulk(message_id.encode())]
        for name, value in data.items():
            if not isinstance(name, str) or not name:
                raise entry_error(index, "the fields layout needs non-empty string keys in data")
            if name in self._reserved or (headers and name in headers):
                raise entry_error(index, f"field {name!r} is reserved or given twice")
            parts.append(bulk(_encode_text(index, name)))
            parts.append(bulk(_field_value(index, value)))
        count = 1 + len(data)
        if headers:
            parts.append(self._header_fields(index, headers))
            count += len(headers)
        return self._start(count) + b"".join(parts)

    def _raw(self, index: int, envelope: Envelope) -> bytes:
        return self._start(1) + _FIELD_BODY + bulk(_field_value(index, plain(envelope[1])))

    def _header_fields(self, index: int, headers: dict[str, str]) -> bytes:
        parts: list[bytes] = []
        for name, value in headers.items():
            if name in self._reserved:
                raise entry_error(index, f"header {name!r} clashes with a {self.kind} field")
            parts.append(bulk(_encode_text(index, name)))
            parts.append(bulk(_encode_text(index, value)))
        return b"".join(parts)


def _why(error: Exception) -> BaseException:
    """orjson words a refusal of the fallback as "Type is not JSON serializable"; the
    fallback's own reason (encode_extra's) says which value and why."""
    return error.__cause__ or error


def _encode_text(index: int, text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise entry_error(index, "text is not valid Unicode (lone surrogate)") from None


def _field_value(index: int, value: Any) -> bytes:
    if isinstance(value, str):
        return _encode_text(index, value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return dumps_json(value)
    except (orjson.JSONEncodeError, TypeError) as error:
        raise entry_error(index, f"value cannot be written as JSON: {_why(error)}") from None


def fields_of(command: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The stream key and field map of an encoded XADD (dead letters read commands back)."""
    args = decode_command(command)
    star = args.index(b"*")
    pairs = args[star + 1 :]
    return args[1], dict(zip(pairs[::2], pairs[1::2], strict=True))


def dead_letter_message(
    kind: str, topic: str, message_id: str, command: bytes, timestamp: str
) -> bytes:
    """The Message JSON for `dlq:<topic>` (JobFirst reads that list as Messages): the stored
    one for jobfirst, otherwise one rebuilt from the fields."""
    _, fields = fields_of(command)
    if kind == "jobfirst" and b"data" in fields:
        return fields[b"data"]
    if kind == "raw":
        body = fields.get(b"body", b"")
        try:
            data: Any = body.decode()
        except UnicodeDecodeError:
            data = body
    else:
        data = {
            name.decode(errors="replace"): value.decode(errors="replace")
            for name, value in fields.items()
            if name != b"message_id"
        }
    return message_json(message_id, topic, data, headers=None, metadata=None, timestamp=timestamp)
