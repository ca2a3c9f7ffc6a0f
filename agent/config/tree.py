"""The typed, frozen configuration tree: every key, its default and what it means.

Loading (defaults < YAML < standard env < SIDECAR_* env < CLI) lives in `agent.config.load`;
this module is the schema only. Each leaf is declared with `setting(...)`, whose doc text feeds
`docs/configuration.md` and `configs/agent.yaml` (a test keeps both in step with this file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

Duration = Annotated[float, "duration"]
"""Seconds, written in config as `250ms`, `5s`, `1m`."""
Size = Annotated[int, "size"]
"""Bytes, written in config as `64MiB`."""

SpanFormat = Literal["auto", "jobfirst", "span-json", "otlp-json", "otel-sdk"]
Layout = Literal["jobfirst", "fields", "raw"]
AckMode = Literal["disk", "redis", "memory"]
WhenFull = Literal["block", "reject"]
ContainerLogs = Literal["none", "cri", "docker", "auto"]
EventLoop = Literal["auto", "asyncio"]
SAMPLER_NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
"""OTEL_TRACES_SAMPLER names `spans.sampler` accepts (agent.spans.sampling implements them)."""
RedisMode = Literal["standalone", "cluster", "sentinel"]


def setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    """A config leaf: its default and one line saying what it does."""
    meta = {"doc": doc, "secret": secret}
    if isinstance(default, (list, dict)):
        factory = default.copy
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type[Any], doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


@dataclass(frozen=True, slots=True)
class RetryConfig:
    initial_interval: Duration = setting(0.5, "First backoff delay after a retryable failure.")
    multiplier: float = setting(2.0, "Each further delay is the previous one times this.")
    max_interval: Duration = setting(30.0, "Backoff delays never exceed this.")
    jitter: float = setting(0.2, "Random spread of each delay, as a fraction (0.2 = ±20%).")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    max_bytes: Size = setting(256 * 1024**2, "Byte limit of the durable disk queue.")
    when_full: WhenFull = setting(
        "reject", "What a producer does when the queue is full: wait up to full_timeout, or fail."
    )
    full_timeout: Duration = setting(2.0, "Longest wait for space when when_full is block.")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_file: str = setting("", "PEM file of CAs to trust instead of the system store.")
    cert_file: str = setting("", "PEM client certificate for mutual TLS.")
    key_file: str = setting("", "PEM private key of the client certificate.", secret=True)
    insecure_skip_verify: bool = setting(False, "Do not verify the server certificate (testing).")


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = setting(
        "info", "Lowest level of the agent's own log lines."
    )
    format: Literal["json", "console"] = setting(
        "json", "json: one JSON object a line on stdout; console: readable text for terminals."
    )


@dataclass(frozen=True, slots=True)
class AdminConfig:
    enabled: bool = setting(True, "Serve /healthz, /readyz, /metrics and /status.")
    listen: str = setting("0.0.0.0:8788", "host:port of the admin HTTP server.")
    ready_requires_dependencies: bool = setting(
        False,
        "Make /readyz fail while Redis or the OTLP endpoint is unreachable (not only when full).",
    )
    max_connections: int = setting(
        64, "Connections served at once; more are answered 503 and closed at once."
    )
    idle_timeout: Duration = setting(
        60.0,
        "A connection sending no complete request head for this long (after connecting or "
        "after its last response) is closed: idle keep-alive and slow headers alike.",
    )


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str = setting("", "service.name for spans whose records carry none (OTEL_SERVICE_NAME).")
    resource_attributes: dict[str, str] = setting(
        {}, "Extra resource attributes on every span (OTEL_RESOURCE_ATTRIBUTES, k=v,k=v)."
    )


@dataclass(frozen=True, slots=True)
class SpansConfig:
    enabled: bool = setting(True, "Run the span pipeline (it idles when paths is empty).")
    paths: list[str] = setting([], "Glob patterns of span log files to tail.")
    format: SpanFormat = setting("auto", "Input format of every path not named in path_formats.")
    path_formats: dict[str, str] = setting(
        {}, "Per-glob format override, glob=format (e.g. /logs/api/*.log=jobfirst)."
    )
    container_logs: ContainerLogs = setting(
        "none",
        "Files are container runtime logs to unwrap before the span format: cri (kubelet's "
        "/var/log/pods), docker (json-file), auto (per file, from its first line), none.",
    )
    start_at: Literal["beginning", "end"] = setting(
        "beginning",
        "Where to read files found at the agent's very first start (no checkpoints yet); "
        "files appearing later are always read from the beginning.",
    )
    max_line_bytes: Size = setting(
        1024**2,
        "Longer records are copied whole to a spill file in data_dir/deadletter/oversize/ "
        "(ship: beside its dead-letter file) and dead-lettered as line_too_long with its "
        "spill_path; the file keeps flowing.",
    )
    orphan_timeout: Duration = setting(
        300.0,
        "A started span never ended is exported, marked incomplete, after this; a container "
        "log line whose runtime pieces never get their end is dead-lettered after it.",
    )
    poll_interval: Duration = setting(
        1.0,
        "How often files are checked for growth and new files looked for when change "
        "notifications do not work; while they work, a safety-net check runs 10x less often.",
    )
    checkpoint_interval: Duration = setting(1.0, "How often delivered file offsets are saved.")
    rotate_wait: Duration = setting(
        10.0, "How long a rotated-away file is still read to its end before it is let go."
    )
    sampler: str = setting(
        "parentbased_always_on",
        "always_on, always_off, traceidratio, parentbased_* (OTEL_TRACES_SAMPLER).",
    )
    sampler_arg: float = setting(1.0, "Ratio for traceidratio samplers (OTEL_TRACES_SAMPLER_ARG).")
    dead_letter_max_bytes: Size = setting(
        64 * 1024**2, "Size at which the span dead-letter file is rotated (one old file kept)."
    )
    oversize_max_bytes: Size = setting(
        256 * 1024**2,
        "Total size of oversize records kept for their dead letters, oldest deleted past it; "
        "one record longer than this keeps only its first oversize_max_bytes.",
    )
    follow_symlinks: bool = setting(
        False,
        "Read matched symlinks; even then only targets inside the watched directories "
        "(skipped paths are logged and counted).",
    )
    max_open_files: int = setting(
        512,
        "Descriptors held for followed files; past it the least recently read idle files are "
        "closed and reopened by identity when they grow.",
    )


@dataclass(frozen=True, slots=True)
class ExportBatchConfig:
    max_spans: int = setting(4096, "Flush a batch at this many spans.")
    max_bytes: Size = setting(2 * 1024**2, "Flush a batch at this many encoded bytes.")
    linger: Duration = setting(0.2, "Flush a non-empty batch after waiting this long.")


@dataclass(frozen=True, slots=True)
class ExportConfig:
    endpoint: str = setting(
        "http://localhost:4318/v1/traces",
        "OTLP/HTTP traces URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or _ENDPOINT + /v1/traces).",
    )
    protocol: Literal["http/protobuf", "http/json"] = setting(
        "http/protobuf", "OTLP encoding (OTEL_EXPORTER_OTLP_PROTOCOL)."
    )
    compression: Literal["gzip", "none"] = setting(
        "gzip", "Request body compression (OTEL_EXPORTER_OTLP_COMPRESSION)."
    )
    headers: dict[str, str] = setting(
        {}, "Extra request headers, k=v,k=v (OTEL_EXPORTER_OTLP_HEADERS).", secret=True
    )
    timeout: Duration = setting(10.0, "Per-request timeout (OTEL_EXPORTER_OTLP_TIMEOUT).")
    max_request_bytes: Size = setting(
        4 * 1024**2, "Uncompressed request size limit; bigger batches are split."
    )
    max_in_flight: int = setting(4, "Export requests sent concurrently.")
    tls: TlsConfig = section(TlsConfig, "TLS for the OTLP endpoint.")
    batch: ExportBatchConfig = section(ExportBatchConfig, "Span batching.")
    retry: RetryConfig = section(RetryConfig, "Backoff for retryable export failures.")
    queue: QueueConfig = section(QueueConfig, "Disk queue holding batches while Jaeger is away.")


@dataclass(frozen=True, slots=True)
class OtlpHttpReceiverConfig:
    listen: str = setting(
        "127.0.0.1:4318",
        "host:port of OTLP/HTTP (POST /v1/traces); loopback reaches the pod's other containers.",
    )
    max_connections: int = setting(
        256, "Connections served at once; more are answered 503 and closed at once."
    )
    idle_timeout: Duration = setting(
        120.0,
        "A connection sending no complete request head for this long (after connecting or "
        "after its last response) is closed: idle keep-alive and slow headers alike.",
    )


@dataclass(frozen=True, slots=True)
class OtlpGrpcReceiverConfig:
    enabled: bool = setting(
        False, "Also serve OTLP/gRPC (needs the extra: pip install 'sidecar-agent[grpc]')."
    )
    listen: str = setting("127.0.0.1:4317", "host:port of OTLP/gRPC.")


@dataclass(frozen=True, slots=True)
class OtlpReceiverConfig:
    enabled: bool = setting(
        False,
        "Receive spans over OTLP from SDKs; off by default, as the default export.endpoint is "
        "localhost:4318 too (the agent refuses to export to its own receiver).",
    )
    max_body_bytes: Size = setting(
        4 * 1024**2, "Request bodies over this, compressed or inflated, get 413."
    )
    auth_token: str = setting(
        "", "If set, requests need 'Authorization: Bearer <token>' (401).", secret=True
    )
    max_pending_spans: int = setting(
        100_000,
        "Received spans not yet durable (sent or in the disk queue); past it requests get 429.",
    )
    timeout: Duration = setting(
        10.0, "Longest wait for a request's spans to become durable before 503 (they still go)."
    )
    retry_after: Duration = setting(1.0, "Retry-After sent with 429 and 503.")
    http: OtlpHttpReceiverConfig = section(OtlpHttpReceiverConfig, "OTLP/HTTP server.")
    grpc: OtlpGrpcReceiverConfig = section(OtlpGrpcReceiverConfig, "OTLP/gRPC server (optional).")


@dataclass(frozen=True, slots=True)
class ReceiversConfig:
    otlp: OtlpReceiverConfig = section(
        OtlpReceiverConfig, "OTLP receiver: spans that SDKs send instead of logging them."
    )


@dataclass(frozen=True, slots=True)
class TopicConfig:
    layout: Layout = setting(
        "jobfirst", "How a message becomes stream fields: jobfirst, fields, raw."
    )
    key: str = setting("stream:{topic}", "Stream key template; {topic} is the topic name.")
    maxlen: int = setting(0, "Trim the stream with MAXLEN ~ n on every XADD (0: never trim).")
    partitions: int = setting(
        1,
        "Spread the topic over this many streams, <key>:<p> for p in 0..n-1, by the message "
        "key (hash; no key: round robin). 1: one stream.",
    )


@dataclass(frozen=True, slots=True)
class MessageBatchConfig:
    max_messages: int = setting(1000, "Flush a per-stream batch at this many messages.")
    max_bytes: Size = setting(1024**2, "Flush a per-stream batch at this many bytes.")
    linger: Duration = setting(
        0.002,
        "Longest wait to fill a batch while another is in flight (idle streams send at once).",
    )


DeliveryProtocol = Literal["jobfirst", "dapr"]


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    topic: str = setting(
        "",
        "Topic whose stream is delivered to the app; empty with protocol dapr: the topics the "
        "app lists at GET /dapr/subscribe (on the endpoint's host).",
    )
    group: str = setting("jobfirst-consumer-group", "Consumer group (created with MKSTREAM).")
    consumer: str = setting("", "Consumer name in the group (default: POD_NAME or the host name).")
    endpoint: str = setting("", "The application's URL each delivery is POSTed to.")
    protocol: DeliveryProtocol = setting(
        "jobfirst", "jobfirst: the Message JSON; dapr: a CloudEvents 1.0 envelope."
    )
    pubsub_name: str = setting("pubsub", "pubsubname in Dapr CloudEvents.")
    max_retries: int = setting(3, "Retries after the first attempt before the dead-letter list.")
    retry_delay: Duration = setting(5.0, "Delay before the first retry; doubles per retry.")
    max_retry_delay: Duration = setting(
        30.0, "Retry delays never exceed this (below processing_timeout: no claim mid-backoff)."
    )
    batch_size: int = setting(10, "Entries read per XREADGROUP.")
    concurrency: int = setting(10, "Deliveries in flight at once (1 when ordered).")
    delivery_timeout: Duration = setting(30.0, "Timeout of one delivery request to the app.")
    processing_timeout: Duration = setting(
        60.0, "A pending entry idle this long is claimed (XAUTOCLAIM) from a dead consumer."
    )
    ordered: bool = setting(False, "Deliver one entry at a time, in stream order.")
    bulk: int = setting(0, "Most entries per delivery request (0: one entry per request).")


@dataclass(frozen=True, slots=True)
class MessagesConfig:
    enabled: bool = setting(True, "Run the message proxy and Redis writer.")
    ack: AckMode = setting(
        "disk", "When a publish is answered: disk (fsync'd), redis (XADD done), memory (lossy)."
    )
    default_topic: TopicConfig = section(TopicConfig, "Layout of topics not listed in topics.")
    topics: dict[str, TopicConfig] = setting(
        {}, "Per-topic layout, key template and maxlen, by topic name."
    )
    batch: MessageBatchConfig = section(MessageBatchConfig, "Publish batching.")
    max_in_flight: int = setting(4, "Pipelined XADD batches outstanding per connection.")
    max_attempts: int = setting(
        10, "Attempts before an entry failing with a permanent-looking error is dead-lettered."
    )
    dedupe_window: Duration = setting(
        300.0, "A publish repeating a message id within this window gets the original answer."
    )
    dedupe_max_ids: int = setting(
        100_000, "Client-chosen message ids remembered for dedupe; past it the oldest go early."
    )
    redis_ack_timeout: Duration = setting(
        5.0, "Longest wait for ?ack=redis before 504 (the messages stay buffered and delivered)."
    )
    producer_id: str = setting(
        "", "Producer id for XADD IDMP on Redis >= 8.6 (default: the host name)."
    )
    dead_letter_max_bytes: Size = setting(
        64 * 1024**2, "Size at which the message dead-letter file is rotated (one old file kept)."
    )
    trace_spans: bool = setting(
        True,
        "For messages carrying traceparent: a producer span per publish and a consumer span per "
        "delivery attempt, sent with the span pipeline's export settings.",
    )
    subscriptions: list[SubscriptionConfig] = setting(
        [], "Streams delivered to the application (consumer groups, retries, dead letters)."
    )
    retry: RetryConfig = section(RetryConfig, "Backoff while Redis is unreachable.")
    queue: QueueConfig = section(QueueConfig, "Disk queue holding accepted messages.")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    enabled: bool = setting(True, "Serve the local publish API.")
    listen: str = setting("127.0.0.1:8787", "host:port of the publish API.")
    max_body_bytes: Size = setting(1024**2, "Request bodies larger than this get 413.")
    allowed_topics: list[str] = setting([], "If set, only these topics may be published (403).")
    auth_token: str = setting(
        "", "If set, requests need 'Authorization: Bearer <token>' (401).", secret=True
    )
    retry_after: Duration = setting(1.0, "Retry-After sent with 503 when the buffer is full.")
    read_timeout: Duration = setting(
        30.0, "A request body not fully received within this gets 408 (slow clients)."
    )
    max_inflight_bytes: Size = setting(
        8 * 1024**2,
        "Memory budget of the request bodies being read and decoded at once, across all "
        "connections (a decoded body weighs more than its bytes); past it requests get 503.",
    )
    max_connections: int = setting(
        512, "Connections served at once; more are answered 503 and closed at once."
    )
    idle_timeout: Duration = setting(
        120.0,
        "A connection sending no complete request head for this long (after connecting or "
        "after its last response) is closed: idle keep-alive and slow headers alike.",
    )
    fast_lane: bool = setting(
        True,
        "Serve plain, well-formed HTTP/1.1 publishes with the agent's own small HTTP layer "
        "(the same answers at a fraction of the CPU); off: aiohttp serves every request.",
    )


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    master_name: str = setting("mymaster", "The service name the sentinels monitor.")
    addresses: list[str] = setting([], "Sentinels as host:port (sentinel mode).")
    username: str = setting("", "ACL user for the sentinels (empty: none).")
    password: str = setting("", "Password for the sentinels (empty: none).", secret=True)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str = setting(
        "redis://localhost:6379/0",
        "redis:// or rediss:// URL (REDIS_URL). Cluster and sentinel modes take the user, "
        "password, TLS and database from it; the address comes from seeds or the sentinels.",
        secret=True,
    )
    mode: RedisMode = setting(
        "standalone", "standalone (one server), cluster (Redis Cluster) or sentinel."
    )
    seeds: list[str] = setting(
        [], "Cluster mode: nodes as host:port to discover the slot map from (empty: redis.url's)."
    )
    sentinel: SentinelConfig = section(SentinelConfig, "Sentinel mode: where the master is.")
    wait_replicas: int = setting(
        0,
        "Ack a batch only once this many replicas have it (WAIT): a failover then loses "
        "nothing acked. 0: the master's reply is enough.",
    )
    wait_timeout: Duration = setting(1.0, "Longest WAIT for wait_replicas; short: resend.")
    connect_timeout: Duration = setting(5.0, "Timeout to connect and authenticate.")
    command_timeout: Duration = setting(5.0, "Timeout for a pipelined batch's replies.")
    tls: TlsConfig = section(TlsConfig, "TLS for rediss:// URLs.")


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: str = setting("./sidecar-data", "Directory for queues, checkpoints and dead letters.")
    shutdown_timeout: Duration = setting(
        25.0, "Grace period to drain on SIGTERM (under Kubernetes' default 30s)."
    )
    event_loop: EventLoop = setting(
        "auto", "auto: uvloop where it is installed (a dependency), else asyncio's own loop."
    )
    log: LogConfig = section(LogConfig, "The agent's own logs.")
    admin: AdminConfig = section(AdminConfig, "Admin HTTP server.")
    service: ServiceConfig = section(ServiceConfig, "Resource identity of exported spans.")
    spans: SpansConfig = section(SpansConfig, "Span log tailing.")
    receivers: ReceiversConfig = section(ReceiversConfig, "Spans received over the network.")
    export: ExportConfig = section(ExportConfig, "OTLP export to Jaeger.")
    messages: MessagesConfig = section(MessagesConfig, "Message pipeline into Redis Streams.")
    proxy: ProxyConfig = section(ProxyConfig, "Local publish API.")
    redis: RedisConfig = section(RedisConfig, "Redis connection.")
