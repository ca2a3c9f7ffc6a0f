"""Per-subscription counters and what /readyz and /status say about the app endpoint."""

from __future__ import annotations

import time

from agent.core.metrics import Metrics


class SubscriptionStats:
    def __init__(self, metrics: Metrics, topic: str, group: str) -> None:
        labels = (topic, group)
        self._outcomes = metrics.counter(
            "subscription_deliveries_total",
            "Delivery attempts to the app by outcome: handled, dropped, retry, unreachable.",
            ("topic", "group", "outcome"),
        )
        self._by_outcome = {
            outcome: self._outcomes.labels(*labels, outcome)
            for outcome in ("handled", "dropped", "retry", "unreachable")
        }
        self.retries = metrics.counter(
            "subscription_retries_total",
            "Entries scheduled for another delivery attempt after a backoff.",
            ("topic", "group"),
        ).labels(*labels)
        self.dead_letters = metrics.counter(
            "subscription_dead_letters_total",
            "Entries moved to dlq:<topic> after max_retries.",
            ("topic", "group"),
        ).labels(*labels)
        self.claimed = metrics.counter(
            "subscription_claimed_total",
            "Stale pending entries claimed from other consumers (XAUTOCLAIM).",
            ("topic", "group"),
        ).labels(*labels)
        self.handled = 0
        self.app_up: bool | None = None  # None until the first attempt
        self.app_error = ""
        self.app_error_since: float | None = None

    def outcome(self, outcome: str, count: int = 1) -> None:
        self._by_outcome[outcome].inc(count)
        if outcome in ("handled", "dropped"):
            self.handled += count

    def app_answered(self, status: int) -> None:
        if status < 500:
            self.app_up = True
            self.app_error = ""
            self.app_error_since = None
        else:
            self._app_failing(f"HTTP {status}")

    def app_unreachable(self, error: str) -> None:
        self._app_failing(error)

    def _app_failing(self, error: str) -> None:
        self.app_up = False
        self.app_error = error
        if self.app_error_since is None:
            self.app_error_since = time.monotonic()

    def app_failing_for(self) -> float:
        since = self.app_error_since
        return 0.0 if since is None else time.monotonic() - since
