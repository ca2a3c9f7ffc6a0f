"""Dead-letter routes on the proxy port, registered on the publish API's app:

  GET    /v1/topics/{topic}/dead-letters?offset=0&limit=100   a page of dlq:<topic>
  POST   /v1/topics/{topic}/dead-letters/retry                all, or {"ids": [...]}
  DELETE /v1/topics/{topic}/dead-letters                      all, or {"ids": [...]}

Retry puts each chosen Message back into its stream with its own id (not "the oldest one":
the one asked for). The redis-py client is made on the first request (it costs RSS an agent
that never uses these routes does not pay). docs/http-api.md shows bodies and answers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from agent.config.tree import Config
from agent.core.http import json_response
from agent.messages.api import ExtraRoute
from agent.messages.codec import BodyError
from agent.messages.message import AcceptTime
from agent.messages.partition import StreamLayout, layout_for
from agent.messages.redis.resp import decode_command
from agent.messages.topics import is_valid_topic

if TYPE_CHECKING:
    from agent.messages.subscribe.dlq import DeadLetterList
    from agent.messages.subscribe.streams import RedisClient

MAX_PAGE = 1000
MAX_IDS = 10_000
ClientFactory = Callable[[], "RedisClient"]


class DeadLetterRoutes:
    def __init__(self, config: Config, client: ClientFactory | None = None) -> None:
        self._config = config
        self._factory = client
        self._client: RedisClient | None = None

    def routes(self) -> list[ExtraRoute]:
        base = "/v1/topics/{topic}/dead-letters"
        return [
            ("GET", base, self.list),
            ("DELETE", base, self.delete),
            ("POST", base + "/retry", self.retry),
        ]

    def _list(self, request: web.Request) -> DeadLetterList:
        from agent.messages.subscribe.dlq import DeadLetterList

        topic = request.match_info["topic"]
        if not is_valid_topic(topic):
            raise BodyError(400, "bad_topic", "not a valid topic name")
        if self._client is None:
            self._client = self._factory() if self._factory else self._own_client()
        return DeadLetterList(self._client, topic)

    def _own_client(self) -> RedisClient:
        from agent.messages.subscribe.client import redis_client

        return redis_client(self._config, 4)

    async def close(self) -> None:
        if self._client is not None and self._factory is None:
            from agent.messages.subscribe.client import close_client

            await close_client(self._client)
        self._client = None

    async def list(self, request: web.Request) -> web.Response:
        dead = self._list(request)
        offset = _int_param(request, "offset", 0, 0, None)
        limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
        with _redis_errors():
            total = await dead.length()
            items = await dead.page(offset, limit)
        following = offset + len(items)
        body = {
            "topic": dead.topic,
            "total": total,
            "offset": offset,
            "items": [item.as_json() for item in items],
            "next_offset": following if following < total else None,
        }
        return json_response(body, 200)

    async def retry(self, request: web.Request) -> web.Response:
        dead = self._list(request)
        ids = await _ids(request)
        layout = self._layout(dead.topic)
        with _redis_errors():
            result = await dead.retry(ids, lambda message: _xadd_args(layout, message))
        body: dict[str, Any] = {"retried": len(result.retried), "ids": result.retried}
        if result.failed:
            body["failed"] = [{"id": key, "error": why} for key, why in result.failed.items()]
        if ids is not None:
            body["not_found"] = sorted(ids - set(result.retried) - set(result.failed))
        return json_response(body, 200)

    async def delete(self, request: web.Request) -> web.Response:
        dead = self._list(request)
        ids = await _ids(request)
        with _redis_errors():
            deleted = await dead.delete(ids)
        return json_response({"deleted": deleted}, 200)

    def _layout(self, topic: str) -> StreamLayout:
        """The topic's layout as publishing uses it: a partitioned topic's retried message goes
        to the partition its key (or the round robin) picks, where a consumer reads it."""
        messages = self._config.messages
        return layout_for(topic, messages.topics.get(topic, messages.default_topic))


def _xadd_args(layout: StreamLayout, message: dict[str, Any]) -> list[bytes]:
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else None
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else None
    envelope = (str(message["id"]), message.get("data"), headers, metadata)
    at = AcceptTime.at(time.time_ns())
    try:
        encoded = layout.encode([envelope], [str(message["id"])], at)
    except BodyError as error:  # e.g. the fields layout needs data to be an object
        raise ValueError(error.message.removeprefix("entry 0: ")) from None
    return decode_command(encoded.blob)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
        limit = f"{low}..{high}" if high is not None else f"at least {low}"
        raise BodyError(400, "bad_parameter", f"{name} must be an integer, {limit}")
    return int(text)


async def _ids(request: web.Request) -> set[str] | None:
    """None (all) for an empty body or `{}`; else the `ids` list as a set."""
    body = await request.read()
    if not body.strip():
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BodyError(400, "bad_json", f"body is not valid JSON: {error.msg}") from None
    if value == {}:
        return None
    ids = value.get("ids") if isinstance(value, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BodyError(400, "bad_body", 'expected {"ids": ["<message id>", ...]} or no body')
    if len(ids) > MAX_IDS:
        raise BodyError(400, "bad_body", f"at most {MAX_IDS} ids per request")
    return set(ids)


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis being away is a 503 with a JSON body, not a failed request."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as error:
        message = f"Redis: {type(error).__name__}: {error}"
        raise BodyError(503, "redis_unavailable", message) from None
