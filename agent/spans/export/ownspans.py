"""Spans the agent makes itself (a message's publish and each delivery attempt) on their way to
the same OTLP endpoint, through the span pipeline's exporter, encoding, resource merge and
sampler.

They are the agent's own telemetry, not the user's data: `emit` never waits (the message path
must not slow down for a tracing backend), the buffer is bounded, and what does not fit while
the endpoint is away is dropped and counted (`sidecar_own_spans_dropped_total`). A failing
request is retried in memory within the usual retry policy; nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque

from agent.config.tree import Config
from agent.core.deadletter import DeadLetterFile
from agent.core.lifecycle import TaskSupervisor
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError
from agent.spans.export.exporter import OtlpHttpExporter
from agent.spans.export.outbound import Outbound, Token, outbound_for, span_sender
from agent.spans.export.sender import Outcome
from agent.spans.model import DecodeResult, Span

log = logging.getLogger("agent.spans.own")

MAX_BUFFERED = 10_000
FLUSH_EVERY = 0.2  # seconds: own spans are few, a short linger makes few requests


class OwnSpans:
    def __init__(
        self,
        config: Config,
        exporter: OtlpHttpExporter,
        dead_letters: DeadLetterFile,
        metrics: Metrics,
    ) -> None:
        self._sender = span_sender(
            "own-spans",
            config.export,
            exporter,
            metrics,
            on_settled=self._settled,
            dead_letter=self._dead_letter,
        )
        self._outbound: Outbound[int] = outbound_for(
            config, sender=self._sender, dead_letters=dead_letters, metrics=metrics
        )
        self._buffer: deque[Span] = deque()
        self._marks = itertools.count()
        self._wake = asyncio.Event()
        self._tasks = TaskSupervisor("own-spans", metrics)
        self._dropped = metrics.counter(
            "own_spans_dropped_total",
            "Spans the agent made itself (publish, delivery) dropped: buffer full.",
        )
        self.emitted = 0
        self.exported = 0

    def emit(self, span: Span) -> None:
        if len(self._buffer) >= MAX_BUFFERED:
            self._dropped.inc()
            return
        self._buffer.append(span)
        self.emitted += 1
        self._wake.set()

    async def start(self) -> None:
        await self._sender.start()
        self._tasks.spawn("flush", self._flush_loop())

    async def stop(self, grace: float) -> None:
        await self._tasks.close()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), grace)
        await self._sender.close(loop.time() + grace)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_EVERY)
            await self._flush()

    async def _flush(self) -> None:
        self._wake.clear()
        if not self._buffer:
            return
        spans = list(self._buffer)
        self._buffer.clear()
        encoded = await self._outbound.prepare(DecodeResult(spans=spans), "agent")
        if encoded:
            loop = asyncio.get_running_loop()
            self._outbound.add(encoded, next(self._marks), loop.time())
            await self._outbound.submit_ready(loop.time(), force=True)

    def _settled(self, token: Token, outcome: Outcome) -> None:
        if outcome is Outcome.SENT:
            self.exported += sum(token.values())

    async def _dead_letter(self, record: bytes, error: PermanentError) -> None:
        log.warning("OTLP endpoint refused the agent's own spans", extra={"error": str(error)})
