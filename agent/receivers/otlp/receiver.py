"""The OTLP receiver as one Component: OTLP/HTTP always, OTLP/gRPC when asked for.

It sits upstream of the span pipeline: started after it and stopped before it, so a request
in progress at shutdown still finds the pipeline running and its spans are flushed by the
pipeline's own stop.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Protocol

from agent.config.tree import OtlpReceiverConfig
from agent.config.validate import GRPC_MISSING
from agent.core.lifecycle import STARTING, STOPPED, Health
from agent.core.metrics import Metrics
from agent.receivers.otlp.http import OtlpHttpServer
from agent.receivers.otlp.intake import OtlpIntake, SpanSink


class GrpcUnavailableError(RuntimeError):
    """OTLP/gRPC was asked for without the `grpc` extra installed."""


def grpc_installed() -> bool:
    return importlib.util.find_spec("grpc") is not None


class _Server(Protocol):
    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class OtlpReceiver:
    name = "otlp-receiver"

    def __init__(self, config: OtlpReceiverConfig, sink: SpanSink, metrics: Metrics) -> None:
        self._config = config
        self.intake = OtlpIntake(config, sink, metrics)
        self.http = OtlpHttpServer(self.intake, config.http, metrics, read_timeout=config.timeout)
        self.servers: list[_Server] = [self.http]
        if config.grpc.enabled:
            if not grpc_installed():
                raise GrpcUnavailableError(GRPC_MISSING)
            from agent.receivers.otlp.grpc import OtlpGrpcServer

            self.servers.append(OtlpGrpcServer(self.intake, config.grpc.listen))
        self._state = "new"

    async def start(self) -> None:
        if self._state != "new":
            return
        self._state = "starting"
        started: list[_Server] = []
        try:
            for server in self.servers:
                await server.start()
                started.append(server)
        except BaseException:
            for server in reversed(started):
                await server.stop()
            self._state = "stopped"
            raise
        self._state = "running"

    async def stop(self) -> None:
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        self._state = "stopped"
        for server in reversed(self.servers):
            await server.stop()
        await self.intake.close()

    def health(self) -> Health:
        if self._state in ("new", "starting"):
            return STARTING
        if self._state == "stopped":
            return STOPPED
        return Health(ready=True, state="running", details={"listen": self.addresses()})

    def addresses(self) -> list[str]:
        return [server.address for server in self.servers]

    def status(self) -> dict[str, Any]:
        intake = self.intake
        summary = {
            "spans_accepted": intake.spans_accepted,
            "spans_rejected": intake.spans_rejected,
            "spans_pending": intake.pending_spans,
        }
        return {"summary": summary, "listen": self.addresses()}
