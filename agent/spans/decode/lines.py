"""The stateless one-JSON-object-per-line decoder that `span-json` and `otlp-json` share.

A subclass implements `decode_obj(obj, raw, into)`, appending spans (and, for
records holding many spans, per-span dead letters) to `into`, or raising
`BadRecord` to dead-letter the whole line. Nothing is appended before a raise.
For the direct path it implements `decode_direct(obj, direct, out)`: True when every span
of the record went through `direct` (nothing appended otherwise), False to take the
general path for that line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orjson import JSONDecodeError, loads

from agent.spans.decode.common import (
    DEFAULT_MAX_LINE_BYTES,
    LineFeeder,
    dead_letter_for,
    line_too_long,
    load_object,
)
from agent.spans.model import DecodeResult
from agent.spans.types import DirectItem

if TYPE_CHECKING:
    from agent.spans.encode.direct import DirectWriter


class JsonLineDecoder(LineFeeder):
    def __init__(
        self, *, default_service: str | None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    ) -> None:
        self.default_service = default_service
        self.max_line_bytes = max_line_bytes

    def decode_obj(self, obj: dict[str, Any], raw: bytes, into: DecodeResult) -> None:
        raise NotImplementedError

    def decode_direct(
        self, obj: dict[str, Any], direct: DirectWriter, out: list[DirectItem]
    ) -> bool:
        raise NotImplementedError

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        out: list[DirectItem] = []
        decode_direct, limit = self.decode_direct, self.max_line_bytes
        for line in lines:
            if len(line) <= limit:
                try:
                    obj = loads(line)
                except JSONDecodeError:
                    obj = None  # the general path explains
                if type(obj) is dict:
                    if decode_direct(obj, direct, out):
                        continue
                    into.fallbacks += 1
            self.feed_general(line, now_ns, into, out)
        return out

    def feed_into(self, line: bytes, now_ns: int, into: DecodeResult) -> None:
        if len(line) > self.max_line_bytes:
            into.dead.append(line_too_long(line, self.max_line_bytes))
            return
        try:
            obj = loads(line)
        except JSONDecodeError:
            obj = None  # rare: let load_object explain (or fix a BOM)
        try:
            if type(obj) is not dict:
                if not line or line.isspace():
                    into.skipped += 1
                    return
                obj = load_object(line)
            self.decode_obj(obj, line, into)
        except Exception as exc:  # feed must never raise on input
            into.dead.append(dead_letter_for(exc, line))

    def expire(self, now_ns: int) -> DecodeResult:
        return DecodeResult()

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing to restore: every line stands alone."""

    @property
    def pending(self) -> int:
        return 0
