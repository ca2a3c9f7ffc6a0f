"""All subscriptions of one agent: their Redis client, consumers, metrics and health.

Built only when `messages.subscriptions` is set; it is what imports redis-py. The app being
down is reported (reason, `sidecar_subscription_app_up`) but leaves /readyz ready: the app's
own readiness is its business, and entries wait in Redis meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from redis.exceptions import RedisError

from agent.config.tree import Config, SubscriptionConfig
from agent.core.lifecycle import Health, TaskSupervisor
from agent.core.metrics import Metrics
from agent.messages.partition import partition_stream
from agent.messages.subscribe.client import close_client, redis_client
from agent.messages.subscribe.consumer import REDIS_RETRY, Consumer
from agent.messages.subscribe.discovery import ask_app, subscribe_url
from agent.messages.subscribe.protocols import protocol_for
from agent.messages.subscribe.stats import SubscriptionStats
from agent.messages.subscribe.streams import GroupStream, RedisClient
from agent.messages.subscribe.tracing import DeliveryTracer, PassThroughTracer
from agent.messages.subscribe.transport import AppClient

log = logging.getLogger("agent.messages.subscribe")

LAG_POLL_SECONDS = 2.0


def consumer_name(configured: str) -> str:
    return configured or os.environ.get("POD_NAME") or socket.gethostname()


def stream_keys(config: Config, topic: str) -> list[str]:
    """The streams a topic's messages are in: its key, or one per partition when partitioned."""
    topic_config = config.messages.topics.get(topic, config.messages.default_topic)
    key = topic_config.key.replace("{topic}", topic)
    if topic_config.partitions <= 1:
        return [key]
    return [partition_stream(key, number) for number in range(topic_config.partitions)]


class Subscriptions:
    def __init__(
        self, config: Config, metrics: Metrics, tracer: DeliveryTracer | None = None
    ) -> None:
        subscriptions = config.messages.subscriptions
        # Discovered subscriptions come later: room for a few of them in the pool.
        connections = sum(sub.concurrency + 2 for sub in subscriptions) + 64
        self.client = redis_client(config, connections)
        self._config = config
        self._metrics = metrics
        self._grace = max(1.0, config.shutdown_timeout / 3)
        self._tracer = tracer or PassThroughTracer()
        self._discover = [sub for sub in subscriptions if not sub.topic]
        self.consumers = [
            consumer
            for sub in subscriptions
            if sub.topic
            for consumer in self._consumers(config, sub, metrics)
        ]
        self._lag: dict[tuple[str, ...], float] = {}
        self._tasks = TaskSupervisor("subscriptions", metrics)
        metrics.gauge_callback(
            "subscription_lag_messages",
            "Stream entries the group has not read yet (XINFO GROUPS lag).",
            lambda: dict(self._lag),
            ("topic", "group"),
        )
        metrics.gauge_callback(
            "subscription_app_up",
            "1 while the app answers deliveries (below 500), 0 while it fails or is away.",
            self._app_up,
            ("topic", "group"),
        )

    def _consumers(
        self, config: Config, sub: SubscriptionConfig, metrics: Metrics
    ) -> list[Consumer]:
        """One consumer per stream of the topic (each partition is a stream with its own
        group); they share the subscription's counters and app health."""
        stats = SubscriptionStats(metrics, sub.topic, sub.group)
        protocol = protocol_for(sub.protocol, sub.topic, sub.pubsub_name)
        consumers = []
        for key in stream_keys(config, sub.topic):
            name = consumer_name(sub.consumer)
            stream = GroupStream(self.client, key, sub.topic, sub.group, name)
            app = AppClient(sub.endpoint, timeout=sub.delivery_timeout, connections=sub.concurrency)
            consumer = Consumer(
                sub, stream, app, protocol=protocol, stats=stats, tracer=self._tracer
            )
            consumers.append(consumer)
        return consumers

    def redis(self) -> RedisClient:
        """The client, for the dead-letter routes to share."""
        return self.client

    def _app_up(self) -> dict[tuple[str, ...], float]:
        return {
            (c.stream.topic, c.stream.group): float(c.stats.app_up)
            for c in self.consumers
            if c.stats.app_up is not None
        }

    async def start(self) -> None:
        for consumer in self.consumers:
            self._tasks.spawn(f"consume:{consumer.stream.stream}", consumer.run())
        for template in self._discover:
            self._tasks.spawn("discover", self._discover_then_consume(template))
        self._tasks.spawn("lag", self._poll_lag())

    async def _discover_then_consume(self, template: SubscriptionConfig) -> None:
        """Ask the app for its topics (retrying until it answers), then consume them."""
        attempt = 0
        while (found := await ask_app(template)) is None:
            attempt += 1
            await asyncio.sleep(REDIS_RETRY.delay(attempt))
        self._discover.remove(template)
        known = {(c.stream.topic, c.stream.group) for c in self.consumers}
        for sub in found:
            if (sub.topic, sub.group) in known:
                continue
            for consumer in self._consumers(self._config, sub, self._metrics):
                self.consumers.append(consumer)
                self._tasks.spawn(f"consume:{consumer.stream.stream}", consumer.run())
        log.info("subscriptions discovered", extra={"topics": [sub.topic for sub in found]})

    async def stop(self) -> None:
        await asyncio.gather(*(consumer.stop(self._grace) for consumer in self.consumers))
        await self._tasks.close()
        await close_client(self.client)

    async def _poll_lag(self) -> None:
        while True:
            # A partitioned topic's lag is the sum over its streams.
            totals: dict[tuple[str, ...], float] = {}
            for consumer in self.consumers:
                key = (consumer.stream.topic, consumer.stream.group)
                try:
                    lag = await consumer.stream.lag()
                except (RedisError, OSError):
                    totals.setdefault(key, self._lag.get(key, 0.0))
                    continue
                if lag is not None:
                    totals[key] = totals.get(key, 0.0) + float(lag)
            self._lag = totals
            await asyncio.sleep(LAG_POLL_SECONDS)

    def health(self) -> Health | None:
        """None while all is well; else why (never unready for an app outage)."""
        if self._tasks.failed:
            return self._tasks.failure_health()
        problems = [
            f"waiting for {subscribe_url(template.endpoint)} to list subscriptions"
            for template in self._discover
        ]
        for consumer in self.consumers:
            stream = consumer.stream
            name = f"subscription {stream.topic}/{stream.group} ({stream.stream})"
            if consumer.redis_error:
                problems.append(f"{name}: {consumer.redis_error}")
            if consumer.stats.app_up is False:
                failing = consumer.stats.app_failing_for()
                problems.append(
                    f"{name}: app {consumer.app.endpoint} failing for {failing:.0f}s: "
                    f"{consumer.stats.app_error}"
                )
        if not problems:
            return None
        return Health(True, "degraded", "; ".join(problems), dependency_ok=False)

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "topic": c.stream.topic,
                "group": c.stream.group,
                "stream": c.stream.stream,
                "consumer": c.stream.consumer,
                "endpoint": c.app.endpoint,
                "protocol": c.config.protocol,
                "handled": c.stats.handled,
                "lag": self._lag.get((c.stream.topic, c.stream.group)),
                "app_up": c.stats.app_up,
                "app_error": c.stats.app_error or None,
                "redis_error": c.redis_error,
            }
            for c in self.consumers
        ]
