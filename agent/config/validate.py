"""Checks that need more than a type: addresses, URLs, ranges, names that must match."""

from __future__ import annotations

import importlib.util
import urllib.parse
from collections.abc import Iterator

from agent.config.schema import choices_of, hints_of
from agent.config.secrets import mask_url
from agent.config.tree import (
    SAMPLER_NAMES,
    Config,
    QueueConfig,
    RetryConfig,
    SpansConfig,
    TopicConfig,
)
from agent.messages.topics import is_valid_topic

MAX_PARTITIONS = 1024
GRPC_MISSING = (
    "receivers.otlp.grpc.enabled needs grpcio, which is not installed: "
    "pip install 'sidecar-agent[grpc]' (or turn receivers.otlp.grpc.enabled off)"
)


def validate(config: Config) -> list[str]:
    checks = (
        _listen("admin.listen", config.admin.listen),
        _listen("proxy.listen", config.proxy.listen),
        _url("export.endpoint", config.export.endpoint, ("http", "https")),
        _one_authorization(config.export.endpoint, config.export.headers),
        _url("redis.url", config.redis.url, ("redis", "rediss", "unix")),
        _positive("export.max_in_flight", config.export.max_in_flight),
        _positive("export.batch.max_spans", config.export.batch.max_spans),
        _positive("messages.max_in_flight", config.messages.max_in_flight),
        _positive("messages.batch.max_messages", config.messages.batch.max_messages),
        _positive("messages.max_attempts", config.messages.max_attempts),
        _positive("messages.dedupe_max_ids", config.messages.dedupe_max_ids),
        _at_least("messages.redis_ack_timeout", config.messages.redis_ack_timeout, 0.001),
        _at_least("proxy.read_timeout", config.proxy.read_timeout, 0.001),
        _at_least("proxy.max_body_bytes", config.proxy.max_body_bytes, 1024),
        _at_least("proxy.max_inflight_bytes", config.proxy.max_inflight_bytes, 64 * 1024),
        _positive("proxy.max_connections", config.proxy.max_connections),
        _positive("admin.max_connections", config.admin.max_connections),
        _at_least("proxy.idle_timeout", config.proxy.idle_timeout, 0.001),
        _at_least("admin.idle_timeout", config.admin.idle_timeout, 0.001),
        _at_least("spans.dead_letter_max_bytes", config.spans.dead_letter_max_bytes, 64 * 1024),
        _at_least(
            "messages.dead_letter_max_bytes", config.messages.dead_letter_max_bytes, 64 * 1024
        ),
        _at_least("export.max_request_bytes", config.export.max_request_bytes, 1024),
        _at_least("spans.max_line_bytes", config.spans.max_line_bytes, 64),
        _at_least("spans.oversize_max_bytes", config.spans.oversize_max_bytes, 64 * 1024),
        _positive("spans.max_open_files", config.spans.max_open_files),
        _at_least("export.timeout", config.export.timeout, 0.001),
        _retry("export.retry", config.export.retry),
        _retry("messages.retry", config.messages.retry),
        _subscriptions(config),
        _queue("export.queue", config.export.queue),
        _queue("messages.queue", config.messages.queue),
        _sampler(config.spans),
        _path_formats(config.spans.path_formats),
        _topics(config),
        _otlp_receiver(config),
        _redis_mode(config),
    )
    return [problem for check in checks for problem in check]


def _listen(key: str, value: str) -> Iterator[str]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        yield f"{key}: {value!r} is not host:port (e.g. 127.0.0.1:8787, [::1]:8787, :8787)"
    elif host.startswith("[") != host.endswith("]"):
        yield f"{key}: {value!r} has an unbalanced IPv6 bracket"


def _url(key: str, value: str, schemes: tuple[str, ...]) -> Iterator[str]:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in schemes:
        accepted = ", ".join(scheme + "://" for scheme in schemes)
        yield f"{key}: {mask_url(value)!r} must start with one of {accepted}"
    elif parsed.scheme != "unix" and not parsed.hostname:
        yield f"{key}: {mask_url(value)!r} has no host"


def _one_authorization(endpoint: str, headers: dict[str, str]) -> Iterator[str]:
    """URL credentials become an Authorization header, so both cannot be sent."""
    parsed = urllib.parse.urlsplit(endpoint)
    has_userinfo = parsed.username is not None or parsed.password is not None
    if has_userinfo and any(name.strip().lower() == "authorization" for name in headers):
        yield (
            f"export.endpoint: {mask_url(endpoint)!r} carries credentials (user:password@) and "
            "export.headers sets Authorization too; both would be the Authorization header: "
            "keep one (remove the userinfo from the URL, or the header)"
        )


def _positive(key: str, value: int) -> Iterator[str]:
    if value < 1:
        yield f"{key}: must be at least 1, got {value}"


def _at_least(key: str, value: float, minimum: float) -> Iterator[str]:
    if value < minimum:
        yield f"{key}: must be at least {minimum:g}, got {value:g}"


def _retry(key: str, retry: RetryConfig) -> Iterator[str]:
    if retry.multiplier < 1:
        yield f"{key}.multiplier: must be at least 1, got {retry.multiplier:g}"
    if not 0 <= retry.jitter <= 1:
        yield f"{key}.jitter: must be between 0 and 1, got {retry.jitter:g}"
    if retry.initial_interval <= 0:
        yield f"{key}.initial_interval: must be above 0"
    if retry.max_interval < retry.initial_interval:
        yield f"{key}.max_interval: must not be below initial_interval"


def _queue(key: str, queue: QueueConfig) -> Iterator[str]:
    if queue.max_bytes < 1024 * 1024:
        yield f"{key}.max_bytes: must be at least 1MiB, got {queue.max_bytes} bytes"


def _sampler(spans: SpansConfig) -> Iterator[str]:
    if spans.sampler not in SAMPLER_NAMES:
        accepted = ", ".join(SAMPLER_NAMES)
        yield f"spans.sampler: {spans.sampler!r} is not one of the accepted values: {accepted}"
    if not 0 <= spans.sampler_arg <= 1:
        yield f"spans.sampler_arg: must be between 0 and 1, got {spans.sampler_arg:g}"


def _path_formats(path_formats: dict[str, str]) -> Iterator[str]:
    accepted = choices_of(hints_of(SpansConfig)["format"])
    for glob, fmt in path_formats.items():
        if fmt not in accepted:
            yield (
                f"spans.path_formats[{glob}]: {fmt!r} is not one of the accepted values: "
                + ", ".join(accepted)
            )


def _otlp_receiver(config: Config) -> Iterator[str]:
    otlp = config.receivers.otlp
    yield from _listen("receivers.otlp.http.listen", otlp.http.listen)
    yield from _listen("receivers.otlp.grpc.listen", otlp.grpc.listen)
    yield from _positive("receivers.otlp.max_pending_spans", otlp.max_pending_spans)
    yield from _at_least("receivers.otlp.max_body_bytes", otlp.max_body_bytes, 1024)
    yield from _at_least("receivers.otlp.timeout", otlp.timeout, 0.001)
    if not otlp.enabled:
        return
    if not config.spans.enabled:
        yield (
            "receivers.otlp.enabled: received spans go through the span pipeline; set "
            "spans.enabled too"
        )
    if otlp.grpc.enabled and importlib.util.find_spec("grpc") is None:
        yield GRPC_MISSING
    if _same_address(otlp.http.listen, config.export.endpoint):
        yield (
            f"receivers.otlp.http.listen: {otlp.http.listen!r} is where export.endpoint "
            f"({mask_url(config.export.endpoint)!r}) points: spans would loop back into the "
            "agent; point export.endpoint at Jaeger or move the receiver"
        )


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""})


def _same_address(listen: str, url: str) -> bool:
    """Whether `url` reaches the `listen` address (loopback names count as one host)."""
    host, _, port = listen.rpartition(":")
    parsed = urllib.parse.urlsplit(url)
    try:
        url_port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return False
    if not port.isdigit() or int(port) != url_port:
        return False
    listen_host, url_host = host.strip("[]"), parsed.hostname or ""
    return listen_host == url_host or (listen_host in _LOOPBACK and url_host in _LOOPBACK)


def _topics(config: Config) -> Iterator[str]:
    yield from _topic("messages.default_topic", config.messages.default_topic)
    for name, topic in config.messages.topics.items():
        if not is_valid_topic(name):
            yield f"messages.topics: {name!r} is not a valid topic name"
        yield from _topic(f"messages.topics.{name}", topic)
    for name in config.proxy.allowed_topics:
        if not is_valid_topic(name):
            yield f"proxy.allowed_topics: {name!r} is not a valid topic name"


def _subscriptions(config: Config) -> Iterator[str]:
    seen: set[tuple[str, str]] = set()
    for index, sub in enumerate(config.messages.subscriptions):
        key = f"messages.subscriptions.{index}"
        if sub.topic == "" and sub.protocol == "dapr":
            pass  # discovered from the app's GET /dapr/subscribe
        elif not is_valid_topic(sub.topic):
            yield f"{key}.topic: {sub.topic!r} is not a valid topic name"
        if (sub.topic, sub.group) in seen:
            yield f"{key}: topic {sub.topic!r} with group {sub.group!r} is subscribed twice"
        seen.add((sub.topic, sub.group))
        if not sub.group:
            yield f"{key}.group: must not be empty"
        yield from _url(f"{key}.endpoint", sub.endpoint, ("http", "https"))
        yield from _positive(f"{key}.batch_size", sub.batch_size)
        yield from _positive(f"{key}.concurrency", sub.concurrency)
        yield from _at_least(f"{key}.max_retries", sub.max_retries, 0)
        yield from _at_least(f"{key}.bulk", sub.bulk, 0)
        yield from _at_least(f"{key}.retry_delay", sub.retry_delay, 0.001)
        yield from _at_least(f"{key}.delivery_timeout", sub.delivery_timeout, 0.001)
        if sub.max_retry_delay < sub.retry_delay:
            yield f"{key}.max_retry_delay: must not be below retry_delay"
        if sub.processing_timeout <= sub.max_retry_delay:
            yield f"{key}.processing_timeout: must be above max_retry_delay"
        if sub.processing_timeout <= sub.delivery_timeout:
            # Otherwise another consumer could claim an entry whose delivery is still running.
            yield f"{key}.processing_timeout: must be above delivery_timeout"


def _topic(key: str, topic: TopicConfig) -> Iterator[str]:
    if topic.maxlen < 0:
        yield f"{key}.maxlen: must not be negative, got {topic.maxlen}"
    if not 1 <= topic.partitions <= MAX_PARTITIONS:
        yield f"{key}.partitions: must be 1 to {MAX_PARTITIONS}, got {topic.partitions}"
    if "{topic}" not in topic.key and "{" in topic.key:
        yield f"{key}.key: {topic.key!r} may only use the placeholder {{topic}}"


def _redis_mode(config: Config) -> Iterator[str]:
    redis = config.redis
    for index, address in enumerate(redis.seeds):
        yield from _address(f"redis.seeds[{index}]", address)
    for index, address in enumerate(redis.sentinel.addresses):
        yield from _address(f"redis.sentinel.addresses[{index}]", address)
    if redis.mode == "sentinel":
        if not redis.sentinel.addresses:
            yield "redis.sentinel.addresses: sentinel mode needs at least one host:port"
        if not redis.sentinel.master_name:
            yield "redis.sentinel.master_name: sentinel mode needs the monitored service's name"
    if redis.mode != "standalone" and redis.url.startswith("unix:"):
        yield f"redis.url: {redis.mode} mode needs redis:// or rediss://, not a unix socket"


def _address(key: str, value: str) -> Iterator[str]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        yield f"{key}: {value!r} is not host:port (e.g. 10.0.0.5:6379)"
