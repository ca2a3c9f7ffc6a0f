"""What the consumer passes around: one stream entry as a Message, and the app's verdict.

A stream entry written with the jobfirst layout carries the Message JSON in its `data` field and
each header as a field of its own; other layouts are rebuilt into a Message from their fields,
so the application always receives the same shape.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson

from agent.messages.message import message_json, rfc3339_nano

LAYOUT_FIELDS = frozenset({b"data", b"topic", b"timestamp", b"message_id", b"body"})
TRACEPARENT = "traceparent"


class Verdict(enum.Enum):
    """What happens to an entry after one delivery attempt."""

    HANDLED = "handled"  # acked
    DROPPED = "dropped"  # the app asked to drop it (Dapr DROP, 404): acked, counted
    RETRY = "retry"  # delivered again after a backoff, dead-lettered past max_retries
    UNREACHABLE = "unreachable"  # no connection to the app: retried without using an attempt


@dataclass(slots=True)
class Entry:
    """One stream entry on its way to the app. `attempt` is 1-based: the group's delivery
    count, so it survives crashes and claims by other consumers."""

    entry_id: bytes
    parsed: dict[str, Any] | None  # None until first needed: `raw` is all a bulk POST needs
    attempt: int = 1
    raw: bytes | None = None  # the Message JSON as stored, sent as-is while unchanged
    field_headers: dict[str, str] | None = None  # stream fields beside the layout's own

    @property
    def message(self) -> dict[str, Any]:
        if self.parsed is None:
            try:
                parsed = orjson.loads(self.raw) if self.raw is not None else None
            except orjson.JSONDecodeError:
                parsed = None  # delivered as stored; the entry id stands in for its id
            self.parsed = parsed if isinstance(parsed, dict) else {}
        return self.parsed

    @property
    def message_id(self) -> str:
        return str(self.message.get("id") or self.entry_id.decode())

    @property
    def headers(self) -> dict[str, str]:
        headers = self.message.get("headers")
        own = headers if isinstance(headers, dict) else {}
        return {**self.field_headers, **own} if self.field_headers else own

    @property
    def traceparent(self) -> str | None:
        value = self.headers.get(TRACEPARENT)
        return value if isinstance(value, str) else None

    def message_bytes(self, retry_count: int | None = None) -> bytes:
        """The Message JSON; `retry_count` None: as stored (not even parsed when it was
        kept raw), else set to the retries made so far."""
        if retry_count is None and self.raw is not None:
            return self.raw
        message = self.message
        if retry_count is not None:
            message = {**message, "retry_count": retry_count}
        return orjson.dumps(message)


def entry_from_fields(topic: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    """The Message an entry holds: its `data` JSON (jobfirst layout), or one rebuilt from the
    fields (fields and raw layouts, or foreign writers), headers taken from the extra fields."""
    data = fields.get(b"data")
    if data is not None and data.startswith(b'{"id":"'):
        # The Message JSON as JobFirst's publisher and ours write it: parsed when needed.
        extra = _extra_fields(fields) if len(fields) > 3 else None
        return Entry(entry_id, None, raw=bytes(data), field_headers=extra)
    if data is not None:
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict) and "id" in message:
            extra = _extra_fields(fields) if len(fields) > 3 else None
            return Entry(entry_id, message, raw=bytes(data), field_headers=extra)
    return Entry(entry_id, _rebuilt(topic, entry_id, fields))


def _extra_fields(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {
        name.decode(errors="replace"): value.decode(errors="replace")
        for name, value in fields.items()
        if name not in LAYOUT_FIELDS
    }


def _rebuilt(topic: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    text = {
        name.decode(errors="replace"): value.decode(errors="replace")
        for name, value in fields.items()
    }
    message_id = text.pop("message_id", None) or entry_id.decode()
    data: Any = text.pop("body") if set(text) == {"body"} else text
    millis = int(entry_id.split(b"-")[0] or 0)
    built: dict[str, Any] = orjson.loads(
        message_json(
            message_id,
            topic,
            data,
            headers=None,
            metadata=None,
            timestamp=rfc3339_nano(millis * 1_000_000),
        )
    )
    return built
