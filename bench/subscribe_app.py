"""The bare receiving application of bench/subscribe.py, run as its own process.

    python bench/subscribe_app.py PORT

An aiohttp app that takes deliveries on POST /events in every shape the bench sends (a jobfirst
Message, an array of them, a CloudEvent, Dapr's bulk body), answers each as its protocol
expects, and counts messages and distinct ids; GET /stats reports them with the monotonic
times of the first and last message; POST /reset starts over. GET /dapr/subscribe is what
daprd asks before it delivers.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson
from aiohttp import web

PUBSUB = "bench-pubsub"
DAPR_TOPIC = "bench-dapr"


class Counts:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.received = 0
        self.ids: set[str] = set()
        self.first: float | None = None
        self.last: float | None = None
        self.requests = 0

    def add(self, ids: list[str]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.requests += 1
        self.received += len(ids)
        self.ids.update(ids)


COUNTS = Counts()


def ok() -> web.Response:
    return web.Response(status=200)


async def events(request: web.Request) -> web.Response:
    body: Any = orjson.loads(await request.read())
    if isinstance(body, list):  # jobfirst bulk
        COUNTS.add([message["id"] for message in body])
        return ok()
    if "entries" in body:  # Dapr bulk subscribe
        entries = body["entries"]
        COUNTS.add([entry["event"]["id"] for entry in entries])
        statuses = [{"entryId": entry["entryId"], "status": "SUCCESS"} for entry in entries]
        return web.json_response({"statuses": statuses})
    COUNTS.add([body["id"]])  # a Message or a CloudEvent
    return ok()


async def stats(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "received": COUNTS.received,
            "unique": len(COUNTS.ids),
            "requests": COUNTS.requests,
            "first": COUNTS.first,
            "last": COUNTS.last,
        }
    )


async def reset(request: web.Request) -> web.Response:
    COUNTS.reset()
    return ok()


async def dapr_subscribe(request: web.Request) -> web.Response:
    bulk = request.app["dapr_bulk"]
    subscription: dict[str, Any] = {"pubsubname": PUBSUB, "topic": DAPR_TOPIC, "route": "/events"}
    if bulk:
        subscription["bulkSubscribe"] = {"enabled": True, "maxMessagesCount": bulk}
    return web.json_response([subscription])


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app["dapr_bulk"] = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    app.router.add_post("/events", events)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_get("/dapr/subscribe", dapr_subscribe)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def healthz(request: web.Request) -> web.Response:
    return ok()


if __name__ == "__main__":
    main()
