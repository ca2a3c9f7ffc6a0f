"""OTLP/HTTP export: one request body in, one HTTP POST out, an error raised if it failed.

`OtlpHttpExporter.push(record)` is the plain push function the generic sender in
`agent.spans.export.sender` wraps with retries, concurrency and the disk queue. It raises
`RetryableError` (connection refused, timeout, 429/502/503/504, with Retry-After) or
`PermanentError` (any other 4xx, carrying the server's message); statuses are classified
by `agent.core.retry.error_for_status` and nowhere else.

A record is a complete request, prepared once by `pack_request`: a small header (format
version, flags, span count) and the body exactly as it goes on the wire, compressed if
asked. The header makes a record self-describing, so a record spilled to the disk queue is
sent correctly after a restart even if the protocol or compression setting changed.
"""

from __future__ import annotations

import gzip
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from isal import igzip

from agent import __version__
from agent.config.secrets import mask_url
from agent.config.tree import ExportConfig
from agent.core.metrics import Metrics
from agent.core.retry import PermanentError, RetryableError, error_for_status
from agent.core.tls import ssl_context_for

log = logging.getLogger("agent.spans.export.exporter")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Level 1: spans compress about as well at 1 as at 6 (repeated keys and resource headers
# dominate), and the exporter's CPU per span matters more than a few percent of bytes. ISA-L's
# gzip (the isal package) writes standard gzip much faster than zlib, a little larger: the
# measured figures are in docs/benchmarks.md ("What is left").
GZIP_LEVEL = 1
# A server's answer is read up to this much: enough for any error message, and a broken or
# hostile server cannot make the agent buffer a huge body.
MAX_RESPONSE_BYTES = 64 * 1024

_HEADER = struct.Struct("<BBI")
_RECORD_VERSION = 1
_FLAG_GZIP = 0x01
_FLAG_JSON = 0x02


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A record unpacked: the wire body and how to label it."""

    body: bytes
    span_count: int
    gzipped: bool
    json: bool

    @property
    def content_type(self) -> str:
        return JSON if self.json else PROTOBUF

    def plain_body(self) -> bytes:
        """The uncompressed ExportTraceServiceRequest (for dead letters people can replay)."""
        return gzip.decompress(self.body) if self.gzipped else self.body


def pack_request(body: bytes, span_count: int, *, gzipped: bool, json: bool) -> bytes:
    """A queue-safe record of one request: header + body (compressed by the caller or here)."""
    flags = (_FLAG_GZIP if gzipped else 0) | (_FLAG_JSON if json else 0)
    wire = igzip.compress(body, GZIP_LEVEL, mtime=0) if gzipped else body
    return _HEADER.pack(_RECORD_VERSION, flags, span_count) + wire


def unpack_request(record: bytes) -> PreparedRequest:
    if len(record) < _HEADER.size:
        raise ValueError(f"export record of {len(record)} bytes has no header")
    version, flags, span_count = _HEADER.unpack_from(record)
    if version != _RECORD_VERSION:
        raise ValueError(f"export record version {version} is not {_RECORD_VERSION}")
    return PreparedRequest(
        body=record[_HEADER.size :],
        span_count=span_count,
        gzipped=bool(flags & _FLAG_GZIP),
        json=bool(flags & _FLAG_JSON),
    )


def span_count_of(record: bytes) -> int:
    """The span count in a record's header, without touching the body."""
    return int(_HEADER.unpack_from(record)[2])


# --- reading the server's answer ------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def proto_fields(buf: bytes) -> dict[int, int | bytes]:
    """The last value of each varint or length-delimited field of a protobuf message.

    Just enough protobuf to read ExportTraceServiceResponse and google.rpc.Status without
    generated classes; fixed-width fields are skipped, anything malformed raises ValueError.
    """
    fields: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields[number], pos = _varint(buf, pos)
        elif wire_type == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated length-delimited field")
            fields[number], pos = buf[pos : pos + size], pos + size
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return fields


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def partial_success(body: bytes, content_type: str) -> tuple[int, str]:
    """(rejected_spans, error_message) of an ExportTraceServiceResponse; (0, "") if none."""
    if not body:
        return 0, ""
    try:
        if content_type.startswith(JSON):
            found = orjson.loads(body).get("partialSuccess") or {}
            return int(found.get("rejectedSpans") or 0), str(found.get("errorMessage") or "")
        inner = proto_fields(body).get(1)
        if not isinstance(inner, bytes):
            return 0, ""
        fields = proto_fields(inner)
        rejected = fields.get(1, 0)
        message = fields.get(2, b"")
        return (
            _as_int64(rejected) if isinstance(rejected, int) else 0,
            message.decode("utf-8", "replace") if isinstance(message, bytes) else "",
        )
    except (ValueError, AttributeError, TypeError):
        # A 2xx with an unreadable body still means accepted; say so rather than fail it.
        log.warning("unreadable OTLP export response body", extra={"bytes": len(body)})
        return 0, ""


def error_message(body: bytes, content_type: str) -> str:
    """The human message of an error answer: google.rpc.Status.message, JSON, or the text."""
    if not body:
        return ""
    try:
        if content_type.startswith(PROTOBUF):
            status = proto_fields(body)
            message, code = status.get(2), status.get(1)
            if isinstance(message, bytes):
                return message.decode("utf-8", "replace")
            if isinstance(code, int):  # a Status without a message: its bytes are no text
                return f"google.rpc.Status code {code}"
        elif content_type.startswith(JSON):
            found = orjson.loads(body)
            if isinstance(found, dict) and found.get("message"):
                return str(found["message"])
    except (ValueError, TypeError):
        pass
    return body.decode("utf-8", "replace").strip()


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def describe_connection_error(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "request timed out"
    text = str(error) or type(error).__name__
    return text[:300]


# --- the push function ----------------------------------------------------------------------


class OtlpHttpExporter:
    """POSTs prepared records to one OTLP/HTTP traces endpoint over a pooled session."""

    def __init__(self, config: ExportConfig, metrics: Metrics) -> None:
        self.endpoint = config.endpoint
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._requests = metrics.counter(
            "otlp_export_requests_total", "OTLP export requests by outcome.", ("outcome",)
        )
        self._latency = metrics.histogram(
            "otlp_export_request_seconds", "OTLP export request latency."
        )
        self._sent_bytes = metrics.counter(
            "otlp_export_sent_bytes_total", "Request body bytes sent (as on the wire)."
        )
        self._exported_metric = metrics.counter(
            "spans_exported_total", "Spans accepted by the OTLP endpoint."
        )
        self._rejected_metric = metrics.counter(
            "spans_rejected_total", "Spans the OTLP endpoint dropped (partial success)."
        )
        self.spans_exported = 0
        self.spans_rejected = 0
        self.last_success_at: float | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        secure = urlsplit(self.endpoint).scheme == "https"
        connector = aiohttp.TCPConnector(
            limit=max(1, self._config.max_in_flight) * 2,
            ssl=ssl_context_for(self._config.tls) if secure else False,
        )
        headers = {"User-Agent": f"sidecar-agent/{__version__}", **self._config.headers}
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._config.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def push(self, record: bytes) -> None:
        """Send one record; returns when accepted, raises RetryableError / PermanentError."""
        if self._session is None:
            raise RetryableError("exporter is not started")
        try:
            request = unpack_request(record)
        except ValueError as error:
            raise PermanentError(f"unreadable export record: {error}") from None
        headers = {"Content-Type": request.content_type}
        if request.gzipped:
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        try:
            async with self._session.post(
                self.endpoint, data=request.body, headers=headers
            ) as response:
                body = await _read_bounded(response)
                status = response.status
                retry_after = response.headers.get("Retry-After")
                answer_type = response.headers.get("Content-Type", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self._requests.labels("unreachable").inc()
            raise RetryableError(
                f"otlp endpoint unreachable: {describe_connection_error(error)}"
            ) from error
        finally:
            self._latency.observe(time.monotonic() - started)
        failure = error_for_status(status, retry_after, error_message(body, answer_type))
        if failure is not None:
            self._requests.labels(f"http_{status}").inc()
            raise failure
        self._accepted(request, body, answer_type)

    def _accepted(self, request: PreparedRequest, body: bytes, answer_type: str) -> None:
        rejected, message = partial_success(body, answer_type)
        rejected = min(max(rejected, 0), request.span_count)
        exported = request.span_count - rejected
        self._requests.labels("ok").inc()
        self._sent_bytes.inc(len(request.body))
        self._exported_metric.inc(exported)
        self.spans_exported += exported
        self.last_success_at = time.time()
        if rejected or message:
            self._rejected_metric.inc(rejected)
            self.spans_rejected += rejected
            log.warning(
                "OTLP endpoint accepted the request partially",
                extra={"rejected_spans": rejected, "server_message": message[:500]},
            )

    def status(self) -> dict[str, Any]:
        return {
            "endpoint": mask_url(self.endpoint),
            "protocol": self._config.protocol,
            "compression": self._config.compression,
            "spans_exported": self.spans_exported,
            "spans_rejected": self.spans_rejected,
            "last_success_at": self.last_success_at,
        }
