"""The three publish routes as one core, free of any HTTP server: both the aiohttp routes
(agent.messages.api) and the fast lane (agent.messages.fastlane) hand it a `PublishRequest`
and a `BodySource` and write out the `Reply` it gives back, so their answers are the same by
construction.

  messages  POST /v1/topics/{topic}/messages                envelope or array; JSON or msgpack
  dapr      POST /v1.0/publish/{pubsub}/{topic}             Dapr: body = data, 204
  bulk      POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic} Dapr bulk: 204, or 500 + failedEntries

Checks run cheapest first (auth, topic, ack mode, memory charge, declared size) so a request
that will be refused costs no body read. docs/http-api.md lists every status code.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol

import orjson

from agent.config.tree import AckMode, ProxyConfig
from agent.core.budget import MemoryBudget
from agent.core.metrics import Metrics
from agent.messages.codec import (
    BODY_ROUTES,
    BodyError,
    Envelope,
    decode_publish_body,
    is_json_type,
    media_type,
)
from agent.messages.dapr import cloudevent_id, dapr_bulk_body, dapr_data, dapr_headers
from agent.messages.intake import ACK_MODES, Accepted, Intake, PublishRefused
from agent.messages.message import may_need_go_escape
from agent.messages.topics import TOPIC_RULE, is_valid_topic
from agent.messages.tracing import MessageTracer

# The publishing request's W3C traceparent header, for `_accept` (each request is its own task,
# so its own context).
_REQUEST_TRACEPARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_traceparent", default=None
)
TOPIC_CACHE_SIZE = 4096
MESSAGES, DAPR, BULK = "messages", "dapr", "bulk"


class PublishRequest(NamedTuple):
    """What the core needs of a request's head."""

    route: str
    """MESSAGES, DAPR or BULK."""
    topic: str
    query: Mapping[str, str]
    query_string: str
    content_type: str
    authorization: str
    traceparent: str | None
    content_length: int | None
    """None when the body is chunked."""


class Reply(NamedTuple):
    """An answer: a JSON body (Content-Type application/json) or none (204)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


NO_CONTENT = Reply(204, b"")


class BodySource(Protocol):
    """Where a route gets the request body from; the core checks its size and time."""

    def at_hand(self) -> bytes | None:
        """The whole body when it has arrived (no wait); None when it must be read."""

    async def read(self) -> bytes:
        """The whole body; a body past the limit raises BodyError 413."""


class PublishCore:
    def __init__(
        self,
        config: ProxyConfig,
        intake: Intake,
        metrics: Metrics,
        tracer: MessageTracer | None = None,
    ) -> None:
        self._tracer = tracer
        self._config = config
        self._intake = intake
        self._allowed = frozenset(config.allowed_topics)
        self._auth = f"Bearer {config.auth_token}".encode() if config.auth_token else None
        self._accepted = metrics.counter(
            "messages_accepted_total", "Messages accepted by the publish API.", ("ack",)
        )
        self._duplicates = metrics.counter(
            "messages_duplicates_total", "Publishes of a message id seen within dedupe_window."
        )
        self._refused = metrics.counter(
            "publish_errors_total", "Publish requests answered with an error, by code.", ("code",)
        )
        self._accepted_by_mode = {mode: self._accepted.labels(mode) for mode in ACK_MODES}
        routes = metrics.counter(
            "publish_body_routes_total",
            "Publish bodies (own API) by how they were decoded; msgpack_typed and general are"
            " the fast routes' declines.",
            ("route",),
        )
        self._bodies_by_route = {route: routes.labels(route) for route in BODY_ROUTES}
        self._valid_topics: set[str] = set()
        self._budget = MemoryBudget(config.max_inflight_bytes, metrics, "publish_requests")
        self._routes: dict[str, Callable[[PublishRequest, BodySource], Awaitable[Reply]]] = {
            MESSAGES: self._publish,
            DAPR: self._dapr_publish,
            BULK: self._dapr_bulk,
        }

    async def handle(self, request: PublishRequest, source: BodySource) -> Reply:
        """The answer to one publish; every refusal as a JSON error reply."""
        try:
            return await self._routes[request.route](request, source)
        except (BodyError, PublishRefused) as error:
            return self.refusal(error)

    # -- routes ------------------------------------------------------------------------------

    async def _publish(self, request: PublishRequest, source: BodySource) -> Reply:
        topic, ack = self._admit(request)
        kind = media_type(request.content_type)
        with self._charge(request) as charge:
            body = await self._body(request, source)
            envelopes, escape, route = decode_publish_body(body, kind)
            self._bodies_by_route[route].inc()
            charge.entries(len(envelopes))
            result = await self._accept(topic, envelopes, ack, escape=escape)
        if ack != "redis":
            return _json(self._answer(result), 202)
        if result.failures:
            return self._dead_lettered(result)
        return _json(self._answer(result), 201)

    async def _dapr_publish(self, request: PublishRequest, source: BodySource) -> Reply:
        topic, ack = self._admit(request)
        # Dapr assumes text/plain when no Content-Type is given.
        kind = media_type(request.content_type) or "text/plain"
        with self._charge(request):
            body = await self._body(request, source)
            data = dapr_data(body, kind)
            envelope: Envelope = (
                cloudevent_id(data, kind),
                data,
                dapr_headers(request.query, kind),
                None,
            )
            result = await self._accept(topic, [envelope], ack)
        if result.failures:
            return self._dead_lettered(result)
        return NO_CONTENT

    async def _dapr_bulk(self, request: PublishRequest, source: BodySource) -> Reply:
        topic, ack = self._admit(request)
        kind = media_type(request.content_type) or "application/json"
        if not is_json_type(kind):
            raise BodyError(415, "unsupported_media_type", "a bulk publish body is JSON")
        with self._charge(request) as charge:
            body = await self._body(request, source)
            envelopes, entry_ids = dapr_bulk_body(body, request.query)
            charge.entries(len(envelopes))
            escape = bool(request.query_string) or may_need_go_escape(body)
            result = await self._accept(topic, envelopes, ack, escape=escape)
        if not result.failures:
            return NO_CONTENT
        failed = [
            {"entryId": entry_ids[index], "error": error}
            for index, error in result.failures.items()
        ]
        answer = {"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"}
        return _json(answer, 500)

    # -- steps -------------------------------------------------------------------------------

    def check_auth(self, authorization: str) -> None:
        if self._auth is not None and not hmac.compare_digest(authorization.encode(), self._auth):
            raise BodyError(401, "unauthorized", "missing or wrong bearer token")

    def _admit(self, request: PublishRequest) -> tuple[str, AckMode]:
        """Auth, topic and ack mode: everything decided before the body is read."""
        self.check_auth(request.authorization)
        _REQUEST_TRACEPARENT.set(request.traceparent)
        topic = request.topic
        if topic not in self._valid_topics:
            if not is_valid_topic(topic):
                raise BodyError(400, "bad_topic", TOPIC_RULE)
            if len(self._valid_topics) >= TOPIC_CACHE_SIZE:
                self._valid_topics.clear()  # names are client-chosen: keep the memory bounded
            self._valid_topics.add(topic)
        if self._allowed and topic not in self._allowed:
            raise BodyError(403, "topic_forbidden", f"topic {topic!r} is not in allowed_topics")
        requested = request.query.get("ack") if request.query_string else None
        return topic, self._intake.mode(requested)

    def _charge(self, request: PublishRequest) -> Charge:
        """The request's share of the memory budget, before its body is read (the size it
        declares, or the most it may send); decoded entries add to it."""
        declared = request.content_length
        limit = self._config.max_body_bytes
        size = limit if declared is None else declared
        return Charge(self._budget, min(size, limit), self._config.retry_after)

    async def _body(self, request: PublishRequest, source: BodySource) -> bytes:
        """The body, within the size limit and the read timeout; without a wait, timer or
        coroutine when it came whole with the head."""
        limit = self._config.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise BodyError(413, "body_too_large", f"body of {declared} bytes; limit {limit}")
        body = source.at_hand()
        if body is None:
            try:
                async with asyncio.timeout(self._config.read_timeout):
                    body = await source.read()
            except TimeoutError:
                message = f"body not received within {self._config.read_timeout:g}s"
                raise BodyError(408, "body_timeout", message) from None
        if len(body) > limit:  # chunked, so nothing was declared
            raise BodyError(413, "body_too_large", f"body larger than {limit} bytes")
        return body

    async def _accept(
        self, topic: str, envelopes: list[Envelope], ack: AckMode, *, escape: bool = True
    ) -> Accepted:
        tracer = self._tracer
        if tracer is not None and tracer.may_trace(envelopes, _REQUEST_TRACEPARENT.get()):
            return await self._accept_traced(tracer, topic, envelopes, ack, escape)
        # The common case: one coroutine between the route and the intake.
        result = await self._intake.publish(topic, envelopes, ack, escape=escape)
        self._count(result, len(envelopes), ack)
        return result

    def _count(self, result: Accepted, entries: int, ack: AckMode) -> None:
        self._accepted_by_mode[ack].inc(entries - result.duplicates)
        if result.duplicates:
            self._duplicates.inc(result.duplicates)

    async def _accept_traced(
        self,
        tracer: MessageTracer,
        topic: str,
        envelopes: list[Envelope],
        ack: AckMode,
        escape: bool,
    ) -> Accepted:
        """`_accept` with a producer span per traced message (see agent.messages.tracing)."""
        envelopes, spans = tracer.publishing(topic, envelopes, _REQUEST_TRACEPARENT.get())
        try:
            result = await self._intake.publish(topic, envelopes, ack, escape=escape)
        except BaseException:
            tracer.published(spans, [], "refused")
            raise
        self._count(result, len(envelopes), ack)
        tracer.published(spans, result.ids, "accepted")
        return result

    @staticmethod
    def _answer(result: Accepted) -> dict[str, Any]:
        body: dict[str, Any] = {"accepted": len(result.ids), "ids": result.ids}
        if result.duplicates:
            body["duplicates"] = result.duplicates
        if result.entry_ids is not None:
            body["entry_ids"] = result.entry_ids
        return body

    def _dead_lettered(self, result: Accepted) -> Reply:
        self._refused.labels("dead_lettered").inc()
        count = len(result.failures)
        body = self._answer(result)
        body["error"] = {
            "code": "dead_lettered",
            "message": f"Redis refused {count} of {len(result.ids)} messages; they were "
            "dead-lettered (see failed)",
        }
        body["failed"] = [{"index": i, "error": error} for i, error in result.failures.items()]
        return _json(body, 502)

    # -- refusals ----------------------------------------------------------------------------

    def refusal(self, error: BodyError | PublishRefused) -> Reply:
        """`{"error": {"code", "message"}}` (with Retry-After on 503, the bad entry's index)."""
        if isinstance(error, BodyError):
            return self.error(error.status, error.code, error.message, index=error.index)
        headers: tuple[tuple[str, str], ...] = ()
        if error.retry_after is not None:
            headers = (("Retry-After", str(max(1, round(error.retry_after)))),)
        return self.error(error.status, error.code, error.message, headers=headers)

    def error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        index: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        self._refused.labels(code).inc()
        if status == 401:
            headers = (("WWW-Authenticate", "Bearer"),)
        detail: dict[str, Any] = {"code": code, "message": message}
        if index is not None:
            detail["index"] = index
        return Reply(status, orjson.dumps({"error": detail}), headers)


ENTRY_WEIGHT = 1024
"""Estimated bytes one decoded entry keeps alive until its request is answered (envelope, id,
encoded command, their copy in the queue record), measured with 1 MiB bodies of tiny entries,
the worst case; docs/benchmarks.md has the figures."""


class Charge:
    """One request's weight in the budget: taken on entry, grown per decoded entry, given back
    on exit. Not fitting raises PublishRefused 503 `over_memory_budget`."""

    def __init__(self, budget: MemoryBudget, weight: int, retry_after: float) -> None:
        self._budget = budget
        self._retry_after = retry_after
        self.weight = 0
        self._take(weight)

    def entries(self, count: int) -> None:
        self._take(count * ENTRY_WEIGHT)

    def _take(self, weight: int) -> None:
        if not self._budget.try_take(weight, held=self.weight):
            self.__exit__()
            message = (
                f"requests in flight hold the memory budget of {self._budget.max_bytes} bytes "
                "(proxy.max_inflight_bytes); retry shortly"
            )
            raise PublishRefused(503, "over_memory_budget", message, self._retry_after)
        self.weight += weight

    def __enter__(self) -> Charge:
        return self

    def __exit__(self, *_exc: object) -> None:
        weight, self.weight = self.weight, 0
        if weight:
            self._budget.give_back(weight)


def _json(body: Any, status: int) -> Reply:
    return Reply(status, orjson.dumps(body))
