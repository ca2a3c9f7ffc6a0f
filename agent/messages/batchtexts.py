"""The JSON texts a jobfirst batch is assembled from: each entry's `data` and each distinct
headers set, written by one orjson call for the whole request.

A dict per message for orjson to walk costs five times as much as one call for the batch, one
call per message twice as much; msgspec cuts the one output apart (Raw slices of one buffer).
The layout embeds the pieces in its command templates (`agent.messages.layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NamedTuple

import msgspec
import orjson
from msgspec import Raw

from agent.messages.codec import Envelope
from agent.messages.message import encode_extra, may_need_go_escape

_SPLIT_JSON_ARRAY = msgspec.json.Decoder(list[Raw])
_HEADERS = itemgetter(2)


class BatchTexts(NamedTuple):
    """Each entry's `data` as JSON text: the client's own (Raw), or written in the batch's one
    call. `headers` maps id() of each headers dict of an entry without id and metadata (the
    entries the layout writes from a template) to its JSON text; the envelopes keep the dicts
    alive while the map is in use."""

    texts: list[Any]
    escape_written: bool  # whether the written ones may hold a character Go escapes
    headers: dict[int, Any]

    @classmethod
    def of(cls, envelopes: Sequence[Envelope], escape: bool) -> BatchTexts | None:
        """None when some value cannot be written as JSON."""
        texts: list[Any] = [envelope[1] for envelope in envelopes]
        header_sets = _templated_headers(envelopes)
        kinds = set(map(type, texts))  # one C-level pass; nearly every batch is of one kind
        written: list[int] | None = None  # None: every one is written
        if Raw in kinds:
            if len(kinds) == 1 and not header_sets:
                return cls(texts, False, {})
            written = [index for index, data in enumerate(texts) if type(data) is not Raw]
        values = texts if written is None else [texts[i] for i in written]
        count = len(values)
        if header_sets:
            values = [*values, *header_sets.values()]
        try:
            batch = _dumps_batch(values)
            pieces = _SPLIT_JSON_ARRAY.decode(batch)
        except (orjson.JSONEncodeError, TypeError, msgspec.MsgspecError, RecursionError):
            return None
        if written is None:
            texts = pieces[:count] if header_sets else pieces
        else:
            for index, piece in zip(written, pieces, strict=False):  # header texts follow
                texts[index] = piece
        headers = dict(zip(header_sets, pieces[count:], strict=True))
        # What orjson writes holds a character Go escapes only where a string holds it raw:
        # one scan of the batch usually clears every entry at once.
        return cls(texts, escape and may_need_go_escape(batch), headers)


def _templated_headers(envelopes: Sequence[Envelope]) -> dict[int, dict[str, str]]:
    """The distinct headers dicts (by identity) of entries with headers and no id or metadata.
    Dapr's bulk route shares one dict among the entries of a content type."""
    found: dict[int, dict[str, str]] = {}
    if not any(map(_HEADERS, envelopes)):  # a C-level pass: most batches have none
        return found
    for given_id, _, headers, metadata in envelopes:
        if headers and given_id is None and metadata is None:
            found[id(headers)] = headers
    return found


def _dumps_batch(values: list[Any]) -> bytes:
    """What `dumps_json` writes, for a list. OPT_NON_STR_KEYS makes orjson half again slower,
    and nearly every payload has only string keys: try without it first (the output is the
    same whenever that succeeds)."""
    try:
        return orjson.dumps(values, default=encode_extra)
    except orjson.JSONEncodeError:
        return orjson.dumps(values, default=encode_extra, option=orjson.OPT_NON_STR_KEYS)
