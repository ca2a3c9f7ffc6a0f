"""The msgspec Structs and decoders behind codec's fast paths (`{"data": ...}` or an array of
them, JSON and msgpack).

A module of its own so that it stays pure Python when agent.messages.codec is compiled with
mypyc: a Struct class defined in a compiled module loses its class keywords
(`forbid_unknown_fields`, `gc`), and the fast paths would then take bodies they must leave to
the general path.
"""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec


class DataOnly(msgspec.Struct, forbid_unknown_fields=True):
    data: msgspec.Raw


DATA_ONLY = msgspec.json.Decoder(DataOnly | list[DataOnly])


class DataOnlyValue(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    data: Any  # gc=False: thousands a request, dropped at once, never part of a cycle


# What msgspec makes of msgpack as `Any` is what msgpack.Unpacker(raw=False,
# strict_map_key=False, timestamp=3) makes (bin → bytes, the timestamp extension → an aware
# datetime, non-string map keys kept), so the layouts write the same bytes from either. One
# difference: an array used as a map key becomes a tuple here where the general path refuses
# the body; no layout can write a tuple key either, so the request is still a 400 (naming the
# entry instead of the byte).
def _extension(code: int, data: memoryview) -> msgpack.ExtType:
    """An extension type other than the timestamp, as the general path makes it (which no
    layout can write: the entry's error then reads the same on both paths)."""
    return msgpack.ExtType(code, bytes(data))


DATA_ONLY_MSGPACK = msgspec.msgpack.Decoder(
    DataOnlyValue | list[DataOnlyValue], ext_hook=_extension
)


class BulkEntry(msgspec.Struct, gc=False):
    """One entry of Dapr's bulk publish body, its event kept as its JSON text. Unknown keys are
    ignored, as daprd ignores them."""

    entryId: str  # Dapr's names
    event: msgspec.Raw
    contentType: str | None = None
    metadata: dict[str, Any] | None = None


BULK_ENTRIES = msgspec.json.Decoder(list[BulkEntry])
