"""Dapr's publish bodies → envelopes: the single publish (the body is the data), the bulk
publish (entries with their own content types, CloudEvents) and the metadata query parameters,
as daprd reads them. The checks and the envelope shape are `agent.messages.codec`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from agent.messages.bodystructs import BULK_ENTRIES, BulkEntry
from agent.messages.codec import (
    CLOUDEVENTS_JSON,
    MAX_BATCH_ENTRIES,
    BodyError,
    Envelope,
    check_headers,
    decode_json,
    decode_keeping_raw,
    encodable,
    entry_error,
    is_json_type,
    media_type,
    type_name,
)
from agent.messages.message import is_valid_message_id


def dapr_data(body: bytes, kind: str) -> Any:
    """What a Dapr publish body becomes as the message's `data`.

    We store the payload itself, never a CloudEvent wrapper: JobFirst consumers read `data` as
    the application's value. JSON types are parsed (a CloudEvent sent as
    application/cloudevents+json is kept whole), text is kept as text, anything else stays
    bytes (base64 in the Message JSON, as-is in the raw layout).
    """
    if is_json_type(kind):
        return decode_json(body)
    if kind.startswith("text/") or not kind:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    return body


def _bulk_json(body: bytes, index: int) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise entry_error(index, f"event is not valid JSON: {error.msg}") from None


def dapr_headers(
    query: Mapping[str, str], kind: str, index: int = 0, extra: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """`metadata.<k>` query parameters (and bulk entry metadata) become headers; the content
    type is kept as the `content-type` header."""
    prefix = "metadata."
    headers: dict[str, Any] = {
        key[len(prefix) :]: value for key, value in query.items() if key.startswith(prefix)
    }
    if extra:
        headers.update(extra)
    if kind:
        headers["content-type"] = kind
    checked = check_headers(index, headers)
    return checked or {}


def cloudevent_id(data: Any, kind: str) -> str | None:
    """A CloudEvent's own id is a stable message id: reusing it lets retries dedupe."""
    if kind != CLOUDEVENTS_JSON or not isinstance(data, dict):
        return None
    candidate = data.get("id")
    return candidate if is_valid_message_id(candidate) else None


def dapr_bulk_body(body: bytes, query: Mapping[str, str]) -> tuple[list[Envelope], list[str]]:
    """A bulk publish body → envelopes and the entry ids (for `failedEntries`).

    The fast path, as the JSON route's: msgspec checks the body's shape and keeps each event
    as its JSON text (msgspec.Raw), which becomes the message's `data` as sent when the entry
    names a JSON content type and the event is not a string (nearly every bulk publish). Other
    entries parse their event and take the general rules. A body msgspec does not take, or
    one with a bad entry, goes the general way, which words the errors."""
    typed = _typed_bulk(body)
    if typed is not None:
        try:
            return _typed_envelopes(typed, query), [entry.entryId for entry in typed]
        except (BodyError, orjson.JSONDecodeError):
            pass  # the general path names the first bad entry (or byte) as it always does
    return dapr_bulk_entries(decode_json(body), query)


def _typed_envelopes(typed: list[BulkEntry], query: Mapping[str, str]) -> list[Envelope]:
    """Raises BodyError or orjson's error when an entry cannot be taken as sent."""
    envelopes: list[Envelope] = []
    shared: dict[str, dict[str, str]] = {}
    # By contentType as sent, for entries without metadata: the shared headers of a JSON type
    # whose events are kept as their text (absent: not seen yet; None: events are parsed).
    kept: dict[str | None, dict[str, str] | None] = {}
    for index, entry in enumerate(typed):
        event: Any = entry.event  # Raw: see docs/architecture.md, "Rules for compiled code"
        if entry.metadata:
            headers = _kept_headers(index, entry.contentType, query, shared, entry.metadata)
        else:
            sent_kind = entry.contentType
            headers = kept.get(sent_kind)
            if headers is None and sent_kind not in kept:
                headers = _kept_headers(index, sent_kind, query, shared, None)
                kept[sent_kind] = headers
        if headers is not None and memoryview(event)[0] != _QUOTE:
            envelopes.append((None, encodable(event), headers, None))
            continue
        # A string of a JSON type holds JSON text, a CloudEvent gives the id, other types
        # have their own rules: the general ones, on the parsed entry.
        parsed = {
            "entryId": entry.entryId,
            "event": orjson.loads(bytes(event)),
            "contentType": entry.contentType,
            "metadata": entry.metadata,
        }
        envelopes.append(_bulk_entry(index, parsed, query, shared)[0])
    return envelopes


def _typed_bulk(body: bytes) -> list[BulkEntry] | None:
    entries = decode_keeping_raw(BULK_ENTRIES, body)
    if (
        not entries
        or len(entries) > MAX_BATCH_ENTRIES
        or not all(entry.entryId for entry in entries)
    ):
        return None
    return entries


def _kept_headers(
    index: int,
    sent_kind: str | None,
    query: Mapping[str, str],
    shared: dict[str, dict[str, str]],
    metadata: dict[str, Any] | None,
) -> dict[str, str] | None:
    """An entry's headers when its content type lets a (non-string) event be kept as its JSON
    text, else None; entries without metadata share one dict per content type."""
    if not sent_kind:
        return None  # the type is inferred from the event
    kind = media_type(sent_kind)
    if not is_json_type(kind) or kind == CLOUDEVENTS_JSON:
        return None
    return _entry_headers(index, kind, query, shared, metadata)


def _entry_headers(
    index: int,
    kind: str,
    query: Mapping[str, str],
    shared: dict[str, dict[str, str]],
    metadata: dict[str, Any] | None,
) -> dict[str, str]:
    """A bulk entry's headers (`dapr_headers`). Entries without their own metadata share one
    dict per content type: the jobfirst layout then writes them from one command template
    (and nothing changes a headers dict once made)."""
    if metadata:
        return dapr_headers(query, kind, index, metadata)
    headers = shared.get(kind)
    if headers is None:
        headers = shared[kind] = dapr_headers(query, kind, index, metadata)
    return headers


_QUOTE = ord('"')


def dapr_bulk_entries(value: Any, query: Mapping[str, str]) -> tuple[list[Envelope], list[str]]:
    """Dapr's bulk body `[{"entryId", "event", "contentType"?, "metadata"?}]` → envelopes and
    the entry ids (for `failedEntries`)."""
    if not isinstance(value, list) or not value:
        raise BodyError(400, "bad_body", "the bulk body must be a non-empty array of entries")
    if len(value) > MAX_BATCH_ENTRIES:
        message = f"{len(value)} entries in one request; the limit is {MAX_BATCH_ENTRIES}"
        raise BodyError(400, "bad_body", message)
    envelopes: list[Envelope] = []
    entry_ids: list[str] = []
    shared: dict[str, dict[str, str]] = {}  # `_entry_headers`
    for index, entry in enumerate(value):
        envelope, entry_id = _bulk_entry(index, entry, query, shared)
        envelopes.append(envelope)
        entry_ids.append(entry_id)
    return envelopes, entry_ids


def _bulk_entry(
    index: int, entry: Any, query: Mapping[str, str], shared: dict[str, dict[str, str]]
) -> tuple[Envelope, str]:
    if not isinstance(entry, dict):
        raise entry_error(index, f"must be an object, not {type_name(entry)}")
    entry_id = entry.get("entryId")
    if not isinstance(entry_id, str) or not entry_id:
        raise entry_error(index, 'needs an "entryId" string')
    if "event" not in entry:
        raise entry_error(index, 'has no "event"')
    kind = entry.get("contentType")
    if kind is not None and not isinstance(kind, str):
        raise entry_error(index, "contentType must be a string")
    metadata = entry.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise entry_error(index, "metadata must be an object")
    event = entry["event"]
    kind = media_type(kind) if kind else _inferred_type(event)
    data = _bulk_event_data(index, event, kind)
    headers = _entry_headers(index, kind, query, shared, metadata)
    return (cloudevent_id(data, kind), data, headers, None), entry_id


def _inferred_type(event: Any) -> str:
    """Dapr's rule when an entry names no content type: strings are text, the rest JSON."""
    if isinstance(event, str):
        return "text/plain"
    if isinstance(event, dict) and {"id", "source", "specversion", "type"} <= event.keys():
        return CLOUDEVENTS_JSON
    return "application/json"


def _bulk_event_data(index: int, event: Any, kind: str) -> Any:
    # A JSON event arrives already parsed; a string event of a JSON type holds JSON text.
    if is_json_type(kind) and isinstance(event, str):
        return _bulk_json(event.encode(), index)
    return event
