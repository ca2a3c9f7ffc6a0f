"""The local publish API (aiohttp, keep-alive): our routes and Dapr's, JSON errors throughout.

  POST /v1/topics/{topic}/messages                   envelope or array; JSON or msgpack
  POST /v1.0/publish/{pubsub}/{topic}                Dapr: body = data, 204
  POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}    Dapr bulk: 204, or 500 + failedEntries

Checks run cheapest first (auth, topic, ack mode, content type, declared size) so a request
that will be refused costs no body read. docs/http-api.md lists every status code.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from agent.config.tree import AckMode, ProxyConfig
from agent.core.budget import MemoryBudget
from agent.core.http import ConnectionLimits, ServerRunner, error_response, json_response
from agent.core.metrics import Metrics
from agent.messages.codec import (
    BodyError,
    Envelope,
    cloudevent_id,
    dapr_bulk_entries,
    dapr_data,
    dapr_headers,
    decode_envelopes,
    decode_json,
    is_json_type,
    media_type,
)
from agent.messages.intake import ACK_MODES, Accepted, Intake, PublishRefused
from agent.messages.message import may_need_go_escape
from agent.messages.topics import TOPIC_RULE, is_valid_topic
from agent.messages.tracing import MessageTracer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The publishing request's W3C traceparent header, for `_accept` (each request is its own task,
# so its own context).
_REQUEST_TRACEPARENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_traceparent", default=None
)
ExtraRoute = tuple[str, str, Handler]
"""(method, path, handler) of routes other modules serve on the proxy port (dead letters)."""
_JSON_HEADERS = CIMultiDict({"Content-Type": "application/json"})
_NO_CONTENT = 204
TOPIC_CACHE_SIZE = 4096


class PublishApi:
    def __init__(
        self,
        config: ProxyConfig,
        intake: Intake,
        metrics: Metrics,
        extra_routes: Sequence[ExtraRoute] = (),
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
        self._valid_topics: set[str] = set()
        self._budget = MemoryBudget(config.max_inflight_bytes, metrics, "publish_requests")
        self._retry_after = config.retry_after
        # Errors are turned into JSON by a wrapper per route rather than a middleware: the
        # same effect for a fraction of the per-request cost.
        app = web.Application(client_max_size=config.max_body_bytes)
        routes = (
            ("/v1/topics/{topic}/messages", self._publish),
            ("/v1.0/publish/{pubsub}/{topic}", self._dapr_publish),
            ("/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", self._dapr_bulk),
        )
        for path, handler in routes:
            app.router.add_post(path, self._json_errors(handler))
            app.router.add_route("*", path, self._method_not_allowed)
        for method, path, extra in extra_routes:
            app.router.add_route(method, path, self._json_errors(self._authorized(extra)))
        app.router.add_route("*", "/{path:.*}", self._not_found)
        self.app = app
        limits = ConnectionLimits(config.max_connections, config.idle_timeout)
        self._server = ServerRunner(
            app, config.listen, name="proxy", limits=limits, metrics=metrics, shutdown_timeout=5.0
        )

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return f"{self._server.host}:{self._server.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()

    # -- routes ------------------------------------------------------------------------------

    async def _publish(self, request: web.Request) -> web.StreamResponse:
        topic, ack = self._admit(request)
        kind = media_type(request.headers.get("Content-Type", ""))
        with self._charge(request) as charge:
            body = self._body_at_hand(request)
            if body is None:
                body = await self._read_body(request)
            envelopes = decode_envelopes(body, kind)
            charge.entries(len(envelopes))
            result = await self._accept(topic, envelopes, ack, escape=may_need_go_escape(body))
        if ack != "redis":
            return _json(self._answer(result), 202)
        if result.failures:
            return self._dead_lettered(result)
        return _json(self._answer(result), 201)

    async def _dapr_publish(self, request: web.Request) -> web.StreamResponse:
        topic, ack = self._admit(request)
        # Dapr assumes text/plain when no Content-Type is given.
        kind = media_type(request.headers.get("Content-Type", "")) or "text/plain"
        with self._charge(request):
            body = self._body_at_hand(request)
            if body is None:
                body = await self._read_body(request)
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
        return web.Response(status=_NO_CONTENT)

    async def _dapr_bulk(self, request: web.Request) -> web.StreamResponse:
        topic, ack = self._admit(request)
        kind = media_type(request.headers.get("Content-Type", "")) or "application/json"
        if not is_json_type(kind):
            raise BodyError(415, "unsupported_media_type", "a bulk publish body is JSON")
        with self._charge(request) as charge:
            body = self._body_at_hand(request)
            if body is None:
                body = await self._read_body(request)
            envelopes, entry_ids = dapr_bulk_entries(decode_json(body), request.query)
            charge.entries(len(envelopes))
            escape = bool(request.query_string) or may_need_go_escape(body)
            result = await self._accept(topic, envelopes, ack, escape=escape)
        if not result.failures:
            return web.Response(status=_NO_CONTENT)
        failed = [
            {"entryId": entry_ids[index], "error": error}
            for index, error in result.failures.items()
        ]
        answer = {"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"}
        return json_response(answer, status=500)

    # -- steps -------------------------------------------------------------------------------

    def _check_auth(self, request: web.Request) -> None:
        if self._auth is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._auth):
                raise BodyError(401, "unauthorized", "missing or wrong bearer token")

    def _authorized(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            self._check_auth(request)
            return await handler(request)

        return checked

    def _admit(self, request: web.Request) -> tuple[str, AckMode]:
        """Auth, topic and ack mode: everything decided before the body is read."""
        self._check_auth(request)
        _REQUEST_TRACEPARENT.set(request.headers.get("traceparent"))
        topic = request.match_info["topic"]
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

    def _charge(self, request: web.Request) -> Charge:
        """The request's share of the memory budget, before its body is read (the size it
        declares, or the most it may send); decoded entries add to it."""
        declared = request.content_length
        size = self._config.max_body_bytes if declared is None else declared
        return Charge(self._budget, min(size, self._config.max_body_bytes), self._retry_after)

    def _body_at_hand(self, request: web.Request) -> bytes | None:
        """The body when it came whole with the headers (no wait, no timer, no coroutine);
        None when it must be read (`_read_body`)."""
        limit = self._config.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise BodyError(413, "body_too_large", f"body of {declared} bytes; limit {limit}")
        content = request.content
        if not content.is_eof():
            return None
        body = content.read_nowait()
        if len(body) > limit:  # chunked, so nothing was declared
            raise BodyError(413, "body_too_large", f"body larger than {limit} bytes")
        return body

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._config.max_body_bytes
        try:
            async with asyncio.timeout(self._config.read_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BodyError(413, "body_too_large", f"body larger than {limit} bytes") from None
        except TimeoutError:
            message = f"body not received within {self._config.read_timeout:g}s"
            raise BodyError(408, "body_timeout", message) from None

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

    def _dead_lettered(self, result: Accepted) -> web.Response:
        self._refused.labels("dead_lettered").inc()
        count = len(result.failures)
        body = self._answer(result)
        body["error"] = {
            "code": "dead_lettered",
            "message": f"Redis refused {count} of {len(result.ids)} messages; they were "
            "dead-lettered (see failed)",
        }
        body["failed"] = [{"index": i, "error": error} for i, error in result.failures.items()]
        return json_response(body, status=502)

    def _json_errors(self, handler: Handler) -> Handler:
        """Every refusal as `{"error": {"code", "message"}}` (with Retry-After on 503)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except BodyError as error:
                return self._error(error.status, error.code, error.message, index=error.index)
            except PublishRefused as refused:
                headers = None
                if refused.retry_after is not None:
                    headers = {"Retry-After": str(max(1, round(refused.retry_after)))}
                return self._error(refused.status, refused.code, refused.message, headers=headers)

        return guarded

    async def _method_not_allowed(self, request: web.Request) -> web.StreamResponse:
        message = f"{request.method} is not allowed here; publish with POST"
        return self._error(405, "method_not_allowed", message, headers={"Allow": "POST"})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return self._error(404, "not_found", f"no route {request.path!r}; see docs/http-api.md")

    def _error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        index: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self._refused.labels(code).inc()
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        if index is None:
            return error_response(status, code, message, headers)
        body = {"error": {"code": code, "message": message, "index": index}}
        return json_response(body, status, headers)


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


def _json(body: Any, status: int) -> web.Response:
    # The hot path's answer: one prebuilt header set, no content-type parsing.
    return web.Response(body=orjson.dumps(body), status=status, headers=_JSON_HEADERS)
