"""The span-json lines the span benchmarks read: 4 attributes and 1 event each, varied IDs and
values, the same lines for the same seed (bench/encode.py and bench/spans.py compare on them)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

_METHODS = ("GET", "POST", "PUT", "DELETE")
_ROUTES = ("/api/v1/jobs", "/api/v1/users", "/api/v1/companies", "/healthz")


def span_json_lines(count: int, seed: int = 7) -> Iterator[bytes]:
    """`count` span-json records, one compact JSON object each, without a newline."""
    rng = random.Random(seed)
    start = 1_732_777_445_000_000_000
    for i in range(count):
        method, route = rng.choice(_METHODS), rng.choice(_ROUTES)
        begin = start + i * 1_000_000
        record = {
            "trace_id": rng.getrandbits(128).to_bytes(16, "big").hex(),
            "span_id": rng.getrandbits(64).to_bytes(8, "big").hex(),
            "name": f"{method} {route}",
            "kind": "server",
            "start_time_unix_nano": begin,
            "end_time_unix_nano": begin + rng.randrange(100_000, 50_000_000),
            "attributes": {
                "http.method": method,
                "http.route": route,
                "http.status_code": rng.choice((200, 200, 200, 404, 500)),
                "user.id": f"u-{rng.randrange(100_000)}",
            },
            "events": [
                {"name": "db.query", "time_unix_nano": begin + 50_000, "attributes": {"rows": 3}}
            ],
            "service": "jobs-api",
        }
        yield json.dumps(record, separators=(",", ":")).encode()
