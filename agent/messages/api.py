"""The local publish API: our routes and Dapr's (agent.messages.publish), JSON errors
throughout, served by a fast lane for plain publishes and by aiohttp for everything else.

  POST /v1/topics/{topic}/messages                   envelope or array; JSON or msgpack
  POST /v1.0/publish/{pubsub}/{topic}                Dapr: body = data, 204
  POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}    Dapr bulk: 204, or 500 + failedEntries

The fast lane (agent.messages.fastlane) frames strict, well-formed HTTP/1.1 publishes itself and
hands every other request, with its connection, to this aiohttp application; both call the same
`PublishCore`. docs/http-api.md says which requests take which road.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from multidict import CIMultiDict

from agent.config.tree import ProxyConfig
from agent.core.http import ConnectionLimits, ServerRunner
from agent.core.metrics import Metrics
from agent.messages.codec import BodyError
from agent.messages.fastlane import FastLane
from agent.messages.intake import Intake, PublishRefused
from agent.messages.publish import BULK, DAPR, MESSAGES, PublishCore, PublishRequest, Reply
from agent.messages.tracing import MessageTracer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExtraRoute = tuple[str, str, Handler]
"""(method, path, handler) of routes other modules serve on the proxy port (dead letters)."""
_JSON_HEADERS = CIMultiDict({"Content-Type": "application/json"})


class PublishApi:
    def __init__(
        self,
        config: ProxyConfig,
        intake: Intake,
        metrics: Metrics,
        extra_routes: Sequence[ExtraRoute] = (),
        tracer: MessageTracer | None = None,
    ) -> None:
        self._config = config
        self.core = PublishCore(config, intake, metrics, tracer)
        # Errors are turned into JSON by a wrapper per route rather than a middleware: the
        # same effect for a fraction of the per-request cost.
        app = web.Application(client_max_size=config.max_body_bytes)
        routes = (
            ("/v1/topics/{topic}/messages", MESSAGES),
            ("/v1.0/publish/{pubsub}/{topic}", DAPR),
            ("/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", BULK),
        )
        for path, route in routes:
            app.router.add_post(path, self._route(route))
            app.router.add_route("*", path, self._method_not_allowed)
        for method, path, extra in extra_routes:
            app.router.add_route(method, path, self._json_errors(self._authorized(extra)))
        app.router.add_route("*", "/{path:.*}", self._not_found)
        self.app = app
        limits = ConnectionLimits(config.max_connections, config.idle_timeout)
        self.lane = FastLane(self.core, config, metrics)
        self._server = ServerRunner(
            app,
            config.listen,
            name="proxy",
            limits=limits,
            metrics=metrics,
            shutdown_timeout=5.0,
            lane=self.lane if config.fast_lane else None,
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

    def _route(self, route: str) -> Handler:
        core = self.core

        async def publish(request: web.Request) -> web.StreamResponse:
            headers = request.headers
            head = PublishRequest(
                route,
                request.match_info["topic"],
                request.query,
                request.query_string,
                headers.get("Content-Type", ""),
                headers.get("Authorization", ""),
                headers.get("traceparent"),
                request.content_length,
            )
            return response(await core.handle(head, _AiohttpBody(request, self._config)))

        return publish

    def _authorized(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            self.core.check_auth(request.headers.get("Authorization", ""))
            return await handler(request)

        return checked

    def _json_errors(self, handler: Handler) -> Handler:
        """Every refusal of the extra routes as `{"error": {"code", "message"}}`."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except (BodyError, PublishRefused) as error:
                return response(self.core.refusal(error))

        return guarded

    async def _method_not_allowed(self, request: web.Request) -> web.StreamResponse:
        message = f"{request.method} is not allowed here; publish with POST"
        return response(
            self.core.error(405, "method_not_allowed", message, headers=(("Allow", "POST"),))
        )

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        message = f"no route {request.path!r}; see docs/http-api.md"
        return response(self.core.error(404, "not_found", message))


class _AiohttpBody:
    """The body of an aiohttp request as the core reads it."""

    __slots__ = ("_limit", "_request")

    def __init__(self, request: web.Request, config: ProxyConfig) -> None:
        self._request = request
        self._limit = config.max_body_bytes

    def at_hand(self) -> bytes | None:
        content = self._request.content
        if not content.is_eof():
            return None
        return content.read_nowait()

    async def read(self) -> bytes:
        try:
            return await self._request.read()
        except web.HTTPRequestEntityTooLarge:
            message = f"body larger than {self._limit} bytes"
            raise BodyError(413, "body_too_large", message) from None


def response(reply: Reply) -> web.Response:
    """A core reply as aiohttp's response."""
    if not reply.body:
        return web.Response(status=reply.status, headers=CIMultiDict(reply.headers) or None)
    if not reply.headers:
        return web.Response(body=reply.body, status=reply.status, headers=_JSON_HEADERS)
    headers = CIMultiDict(reply.headers)
    headers["Content-Type"] = "application/json"
    return web.Response(body=reply.body, status=reply.status, headers=headers)
