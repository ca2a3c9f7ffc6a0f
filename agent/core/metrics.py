"""Prometheus metrics with the `sidecar_` prefix, one registry per agent instance.

A private registry (not prometheus_client's global one) keeps tests and several agents in one
process apart. Asking twice for the same name returns the same metric, so components can declare
what they use without coordinating.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "sidecar_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

GaugeReader = Callable[[], dict[tuple[str, ...], float]]
MetricT = TypeVar("MetricT", Counter, Gauge, Histogram)


class _CallbackGauges(Collector):
    """Gauges (and counters kept elsewhere) whose values are read at scrape time (queue depth,
    oldest age...). Several readers may feed one family, each with its own label values."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, Sequence[str], list[GaugeReader], bool]] = {}

    def add(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        read: GaugeReader,
        *,
        counter: bool = False,
    ) -> None:
        known = self._families.get(name)
        # Counters merge (each queue adds its own labels); a gauge registered again replaces.
        if counter and known is not None and known[1] == tuple(labels) and known[3]:
            known[2].append(read)
            return
        self._families[name] = (doc, tuple(labels), [read], counter)

    def collect(self) -> Any:
        for name, (doc, labels, readers, counter) in self._families.items():
            kind = CounterMetricFamily if counter else GaugeMetricFamily
            family = kind(name, doc, labels=list(labels))
            for read in readers:
                for label_values, value in read().items():
                    family.add_metric(list(label_values), value)
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        self._callbacks = _CallbackGauges()
        self.registry.register(self._callbacks)
        # process_resident_memory_bytes, cpu seconds, open fds: what operators alert on first.
        ProcessCollector(registry=self.registry)

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return self._get(Counter, name, doc, labels)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, doc, labels)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self._get(Histogram, name, doc, labels, buckets=buckets)

    def gauge_callback(
        self,
        name: str,
        doc: str,
        read: GaugeReader,
        labels: Sequence[str] = (),
    ) -> None:
        """A gauge computed at scrape time; `read` maps label values to the value."""
        self._callbacks.add(PREFIX + name, doc, labels, read)

    def counter_callback(
        self,
        name: str,
        doc: str,
        read: GaugeReader,
        labels: Sequence[str] = (),
    ) -> None:
        """A counter kept by its owner and read at scrape time; exposed as ``name_total``."""
        self._callbacks.add(PREFIX + name, doc, labels, read, counter=True)

    def _get(
        self, kind: type[MetricT], name: str, doc: str, labels: Sequence[str], **options: Any
    ) -> MetricT:
        full = PREFIX + name
        existing = self._metrics.get(full)
        if existing is None:
            existing = kind(full, doc, labelnames=labels, registry=self.registry, **options)
            self._metrics[full] = existing
        if not isinstance(existing, kind):
            raise TypeError(f"metric {full} already registered as {type(existing).__name__}")
        return existing

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def names(self) -> set[str]:
        """Every metric family name this registry exposes (for the dashboard drift test)."""
        return {family.name for family in self.registry.collect()}
