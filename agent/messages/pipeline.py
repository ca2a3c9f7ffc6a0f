"""The message pipeline as one Component: publish API → disk queue → sender → Redis.

Start order is downstream first: the queue opens (recovering what an earlier run left), the
sender starts draining it (Redis being away is not a start failure: we buffer), then the API
takes requests. Stop is the reverse: the API stops taking requests, the sender gets what time
the shutdown grace allows to deliver the backlog, then the queue closes with whatever is left
on disk for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.tree import Config
from agent.core.deadletter import DeadLetterFile
from agent.core.diskqueue.observe import queue_faults, queue_trouble, register_queue_metrics
from agent.core.diskqueue.queue import DiskQueue, DiskQueueStats
from agent.core.lifecycle import STARTING, STOPPED, Health, TaskSupervisor
from agent.core.metrics import GaugeReader, Metrics
from agent.core.retry import RetryPolicy
from agent.messages.api import PublishApi
from agent.messages.deadletters import MessageDeadLetters
from agent.messages.dlqapi import DeadLetterRoutes
from agent.messages.intake import Intake
from agent.messages.redis.modes import writer_for
from agent.messages.redis.writer import NodeStatus
from agent.messages.sender import SenderLimits, StreamSender
from agent.messages.tracing import MessageTracer
from agent.spans.export.ownspans import OwnSpans

if TYPE_CHECKING:
    from agent.messages.subscribe.subscriber import Subscriptions
    from agent.spans.pipeline import SpanPipeline

log = logging.getLogger("agent.messages")

DRAIN_MARGIN = 3.0  # seconds of the shutdown grace kept for closing the queue and the rest


class MessagePipeline:
    name = "messages"

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        data_dir: Path,
        *,
        span_pipeline: SpanPipeline | None = None,
    ) -> None:
        messages = config.messages
        self.own_spans = _own_spans(config, metrics, span_pipeline)
        tracer = MessageTracer(self.own_spans.emit if self.own_spans is not None else None)
        root = data_dir / "messages"
        self._config = config
        self.queue = DiskQueue(
            root / "queue",
            max_bytes=messages.queue.max_bytes,
            when_full=messages.queue.when_full,
            full_timeout=messages.queue.full_timeout,
        )
        self.writer = writer_for(
            config.redis, messages.producer_id or socket.gethostname(), messages.max_attempts
        )
        dead_letter_file = DeadLetterFile(
            root / "dead-letters.jsonl", messages.dead_letter_max_bytes, metrics, "messages"
        )
        self.dead_letters = MessageDeadLetters(dead_letter_file, self.writer, metrics)
        self.intake = Intake(messages, self.queue, retry_after=config.proxy.retry_after)
        self.sender = StreamSender(
            self.queue,
            self.writer,
            self.dead_letters,
            on_finished=self.intake.finished,
            policy=RetryPolicy.from_config(messages.retry),
            limits=SenderLimits(
                max_records=messages.batch.max_messages,
                max_bytes=messages.batch.max_bytes,
                linger=messages.batch.linger,
                max_in_flight=messages.max_in_flight,
                command_timeout=config.redis.command_timeout,
            ),
            metrics=metrics,
        )
        self.subscriptions = _subscriptions(config, metrics, tracer)
        self.dead_letter_routes = DeadLetterRoutes(
            config, self.subscriptions.redis if self.subscriptions is not None else None
        )
        self.api = (
            PublishApi(config.proxy, self.intake, metrics, self.dead_letter_routes.routes(), tracer)
            if config.proxy.enabled
            else None
        )
        self._tasks = TaskSupervisor(self.name, metrics)
        self._state = "new"
        self._final_buffered: int | None = None
        self._gauges(metrics)

    def _gauges(self, metrics: Metrics) -> None:
        register_queue_metrics(metrics, "messages", self.queue.stats)

        def buffer() -> dict[tuple[str, ...], float]:
            if self._state != "running":
                return {}
            stats = self.queue.stats()
            return {("records",): stats.depth_items, ("bytes",): stats.depth_bytes}

        metrics.gauge_callback(
            "message_buffer", "What the disk queue holds, by unit.", buffer, ("unit",)
        )
        metrics.gauge_callback(
            "message_buffer_limit_bytes",
            "messages.queue.max_bytes: the buffer size at which publishes are refused (503).",
            lambda: {(): float(self.queue.stats().max_bytes)} if self._state == "running" else {},
        )
        metrics.gauge_callback(
            "message_buffer_oldest_seconds",
            "Age of the oldest undelivered publish.",
            lambda: {(): self._oldest_age()} if self._state == "running" else {},
        )
        self._node_gauges(metrics)
        metrics.gauge_callback(
            "message_redis_up",
            "1 while Redis takes messages, 0 while the pipeline buffers.",
            lambda: {(): float(self.sender.redis_ok)},
        )

    def _node_gauges(self, metrics: Metrics) -> None:
        def per_node(value: Callable[[NodeStatus], float]) -> GaugeReader:
            return lambda: {(node.address,): value(node) for node in self.writer.nodes()}

        node = ("node",)
        metrics.gauge_callback(
            "message_redis_node_up",
            "1 while the agent has a connection to this Redis node (cluster: each master).",
            per_node(lambda n: float(n.connected)),
            node,
        )
        metrics.gauge_callback(
            "message_redis_node_slots",
            "Cluster hash slots this master serves in the agent's slot map (0: not a cluster).",
            per_node(lambda n: float(n.slots)),
            node,
        )
        metrics.gauge_callback(
            "message_redis_node_sent_entries",
            "XADDs sent to this node since the agent started (a running count).",
            per_node(lambda n: float(n.sent)),
            node,
        )
        metrics.gauge_callback(
            "message_redis_node_failed_batches",
            "Batches (a cluster batch's share) this node failed since the agent started.",
            per_node(lambda n: float(n.failed)),
            node,
        )

    async def start(self) -> None:
        self._state = "starting"
        if self.own_spans is not None:
            await self.own_spans.start()
        await self.queue.open()
        self._tasks.spawn("feed", self.sender.feed())
        self._tasks.spawn("complete", self.sender.complete())
        if self.subscriptions is not None:
            await self.subscriptions.start()
        if self.api is not None:
            try:
                await self.api.start()
            except BaseException:
                await self._close_delivery()
                self._state = "stopped"
                raise
        self._state = "running"
        log.info(
            "message pipeline started",
            extra={"listen": self._config.proxy.listen, "redis": self.writer.target.description},
        )

    async def stop(self) -> None:
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        self._state = "stopping"
        if self.subscriptions is not None:
            await self.subscriptions.stop()
        if self.api is not None:
            await self.api.stop()
        await self.dead_letter_routes.close()
        budget = max(0.0, self._config.shutdown_timeout - DRAIN_MARGIN)
        delivered = False
        try:
            async with asyncio.timeout(budget):
                delivered = await self.sender.drain()
        except TimeoutError:
            pass
        self._final_buffered = self.queue.stats().depth_items
        await self._close_delivery()
        self._state = "stopped"
        log.info(
            "message pipeline stopped",
            extra={"delivered_everything": delivered, "summary": self.summary()},
        )

    async def _close_delivery(self) -> None:
        if self.own_spans is not None:
            await self.own_spans.stop(grace=2.0)
        if self.subscriptions is not None and self._state == "starting":
            await self.subscriptions.stop()
        await self._tasks.close()
        self.writer.disconnect()
        await self.queue.close()

    def _oldest_age(self) -> float:
        oldest = self.queue.stats().oldest_enqueued_ns
        return 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)

    def health(self) -> Health:
        if self._state in ("new", "starting"):
            return STARTING
        if self._state != "running":
            return Health(ready=False, state=self._state) if self._state == "stopping" else STOPPED
        if self._tasks.failed:
            return self._tasks.failure_health()
        stats = self.queue.stats()
        details = self._buffer_details(stats)
        trouble = queue_trouble("messages", stats, details)
        if trouble is not None:
            return trouble
        refused = self.intake.refused_bytes
        if refused is not None and stats.depth_bytes + refused > stats.max_bytes:
            reason = f"disk queue full: {_mib(stats.depth_bytes)} of {_mib(stats.max_bytes)}"
            return Health(False, "full", reason, details, dependency_ok=self.sender.redis_ok)
        if self.sender.last_error:
            reason = (
                f"{self.sender.last_error}; buffering {stats.depth_items} requests "
                f"({_mib(stats.depth_bytes)}), oldest {details['oldest_age_seconds']:.1f}s"
            )
            return Health(True, "buffering", reason, details, dependency_ok=False)
        consuming = self.subscriptions.health() if self.subscriptions is not None else None
        if consuming is not None:
            return Health(
                consuming.ready, consuming.state, consuming.reason, details, consuming.dependency_ok
            )
        return Health(True, "running", details=details)

    def _buffer_details(self, stats: DiskQueueStats) -> dict[str, Any]:
        return {
            "buffered_requests": stats.depth_items,
            "buffered_bytes": stats.depth_bytes,
            "buffer_max_bytes": stats.max_bytes,
            "oldest_age_seconds": round(self._oldest_age(), 3),
            "redis": self.writer.target.description,
            "redis_connected": self.writer.connected,
            **queue_faults(stats),
            "redis_nodes": [
                {"node": node.address, "connected": node.connected, "slots": node.slots}
                for node in self.writer.nodes()
            ],
        }

    def status(self) -> dict[str, Any]:
        server = self.writer.server
        body: dict[str, Any] = {
            "state": self._state,
            "listen": self.api.address if self.api else None,
            "redis": self.writer.target.description,
            "redis_version": server.version_text if server else None,
            "idmp": bool(server and server.supports_idmp),
            "ack": self._config.messages.ack,
            "dedupe_ids": len(self.intake.dedupe),
            "summary": self.summary(),
        }
        if self._state == "running":
            body["buffer"] = self._buffer_details(self.queue.stats())
        if self.subscriptions is not None:
            body["subscriptions"] = self.subscriptions.status()
        return body

    def summary(self) -> dict[str, Any]:
        running = self._state in ("running", "stopping")
        buffered = self.queue.stats().depth_items if running else self._final_buffered
        return {
            "accepted": self.intake.accepted_total,
            "duplicates": self.intake.duplicates_total,
            "written": self.sender.written,
            "retried": self.sender.retried,
            "dead_lettered": self.dead_letters.file.written,
            "buffered_requests": buffered,
        }


def _own_spans(config: Config, metrics: Metrics, spans: SpanPipeline | None) -> OwnSpans | None:
    if spans is None or not config.messages.trace_spans:
        return None
    return OwnSpans(config, spans.exporter, spans.dead_letters, metrics)


def _subscriptions(
    config: Config, metrics: Metrics, tracer: MessageTracer | None
) -> Subscriptions | None:
    """The consuming half, imported only when configured (it brings redis-py in)."""
    if not config.messages.subscriptions:
        return None
    from agent.messages.subscribe.subscriber import Subscriptions

    return Subscriptions(config, metrics, tracer)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"
