"""msgpack publish bodies → each `data` as JSON text, for the codec's msgpack route.

The work is done by the C extension of the same name (`msgpackjson.c` beside this file),
which `python -m agent.native.build` compiles with the other native modules and which then
loads in place of this module (see `agent.native`): it reads a body that is `{"data": ...}` or
an array of them and writes each `data` straight from the msgpack bytes as the JSON text the
general path stores for the value (orjson's spelling, with the characters Go escapes escaped
as `message.go_escape` does), so msgpack `data` is kept as text the way a JSON body's own
`data` is (msgspec.Raw), without Python values in between. It handles a conservative subset
(see the C file) and answers None for anything else.

This pure module is what runs without that build: it handles nothing, so the codec's general
route (msgspec typed decoding, then one orjson call for the batch) runs, with the same result.
"""

from __future__ import annotations

from msgspec import Raw

AVAILABLE = False  # the C extension says True


def data_texts(body: bytes, limit: int) -> list[Raw] | None:
    """Each `data` of a body of 1..`limit` data-only envelopes as its JSON text, or None
    when the body is not one this handles (here: never)."""
    return None
