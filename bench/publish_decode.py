"""Micro benchmark: a batched publish body -> its XADD commands, in one process, per body kind.

The accept-side work that differs between JSON and msgpack bodies of the same 1,000 messages
(bench/publish_load.py's sample), as the publish route runs it: `decode_publish_body` (the
envelopes, and the Go-escape scan of the body unless the native transcoder wrote the texts)
and the jobfirst layout's `encode`. Beside them, the parts of the msgpack
path and what bounds it from below: msgspec decoding the body with every `data` as a Python
value, against decoding it with every `data` left as its msgpack bytes (msgspec.Raw), which is
all a JSON body needs (its `data` is kept as its own JSON text). Then Dapr's bulk body of the
same messages (one content type): its typed route (events kept as their JSON text, one headers
template) against the general one (the body parsed by orjson). CPU time (process_time), the
collector's threshold as the agent sets it, interleaved, median of --repeat runs, µs a message.
bench/proxy.py measures the whole agent end to end.
Run: `.venv/bin/python bench/publish_decode.py`
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import msgspec  # noqa: E402
import orjson  # noqa: E402
from publish_load import sample_data  # noqa: E402

from agent.config.tree import TopicConfig  # noqa: E402
from agent.core.garbage import tune_garbage_collector  # noqa: E402
from agent.messages.codec import decode_envelopes, decode_json, decode_publish_body  # noqa: E402
from agent.messages.dapr import dapr_bulk_body, dapr_bulk_entries  # noqa: E402
from agent.messages.layout import TopicLayout  # noqa: E402
from agent.messages.message import AcceptTime, may_need_go_escape  # noqa: E402

JSON = "application/json"
MSGPACK = "application/msgpack"


class _DataAsValue(msgspec.Struct):
    data: Any


class _DataAsBytes(msgspec.Struct):
    data: msgspec.Raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    tune_garbage_collector()
    batch = args.batch
    envelopes = [{"data": sample_data(number)} for number in range(batch)]
    bodies = {JSON: orjson.dumps(envelopes), MSGPACK: msgpack.packb(envelopes)}
    bulk_body = orjson.dumps(
        [
            {"entryId": str(number), "event": sample_data(number), "contentType": JSON}
            for number in range(batch)
        ]
    )
    at = AcceptTime.at(time.time_ns())
    ids = [f"msg_{at.unix_ns + n}_bench" for n in range(batch)]
    layout = TopicLayout("bench", TopicConfig())

    def accept(kind: str) -> Callable[[], object]:
        body = bodies[kind]

        def work() -> object:
            envelopes, escape = decode_publish_body(body, kind)
            return layout.encode(envelopes, ids, at, escape=escape).blob

        return work

    def accept_bulk(typed: bool) -> Callable[[], object]:
        def work() -> object:
            if typed:
                bulk, _ = dapr_bulk_body(bulk_body, {})
            else:
                bulk, _ = dapr_bulk_entries(decode_json(bulk_body), {})
            return layout.encode(bulk, ids, at, escape=may_need_go_escape(bulk_body)).blob

        return work

    assert accept(JSON)() == accept(MSGPACK)(), "the two bodies must write the same commands"
    assert accept_bulk(True)() == accept_bulk(False)(), "both bulk paths must write the same"
    as_values = msgspec.msgpack.Decoder(list[_DataAsValue])
    as_bytes = msgspec.msgpack.Decoder(list[_DataAsBytes])
    cases: dict[str, Callable[[], object]] = {
        "JSON: decode + escape scan + encode": accept(JSON),
        "msgpack: decode + escape scan + encode": accept(MSGPACK),
        "JSON: decode_envelopes": lambda: decode_envelopes(bodies[JSON], JSON),
        "msgpack: decode_envelopes": lambda: decode_envelopes(bodies[MSGPACK], MSGPACK),
        "msgpack floor: msgspec, data as values": lambda: as_values.decode(bodies[MSGPACK]),
        "msgpack floor: msgspec, data as bytes": lambda: as_bytes.decode(bodies[MSGPACK]),
        "Dapr bulk: decode + escape scan + encode": accept_bulk(True),
        "Dapr bulk, general route (orjson parse)": accept_bulk(False),
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, work in cases.items():
            runs[name].append(_cpu_per_message(work, batch))
    print(f"{batch:,} messages a body; CPU µs a message, median of {args.repeat}")
    for name, values in runs.items():
        print(f"  {name:42} {statistics.median(values):6.3f}")
    json_cost = statistics.median(runs["JSON: decode + escape scan + encode"])
    msgpack_cost = statistics.median(runs["msgpack: decode + escape scan + encode"])
    print(f"  JSON / msgpack CPU (>= 1: msgpack as cheap as JSON): {json_cost / msgpack_cost:.2f}")


def _cpu_per_message(work: Callable[[], object], batch: int, loops: int = 50) -> float:
    gc.collect()
    started = time.process_time()
    for _ in range(loops):
        work()
    return (time.process_time() - started) / loops / batch * 1e6


if __name__ == "__main__":
    main()
