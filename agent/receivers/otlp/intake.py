"""What both OTLP transports share: admission, inflating, decoding, handing over, the answer.

A request is answered only once its spans are durable — sent to the endpoint, fsync'd in the
span disk queue, or dead-lettered — so success means what a 2xx means on the publish API.
Memory is bounded by `max_pending_spans` (spans received and not yet durable, over all
requests); past it, and while the disk queue is full, requests are refused as retryable
(`Refusal.retry_after`) before their spans are handed over. A request whose spans do not become
durable within `timeout` is answered as retryable too; its spans still go out, so a retry may
duplicate them (at most that request's spans, with the same IDs).

Every refusal and every rejected span is counted in metrics (`otlp_receiver_*`).
"""

from __future__ import annotations

import asyncio
import hmac
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agent.config.tree import OtlpReceiverConfig
from agent.core.metrics import Metrics
from agent.receivers.otlp.decode import BadRequestError, Decoded, decode_json, decode_protobuf
from agent.receivers.otlp.passthrough import pass_through
from agent.spans.delivery.receipt import PassThroughRules, Receipt
from agent.spans.export.sender import SenderClosedError
from agent.spans.model import Span
from agent.spans.pipeline import PipelineClosedError
from agent.spans.types import EncodedSpan


class SpanSink(Protocol):
    """Where received spans go (the span pipeline)."""

    def receive(
        self,
        spans: list[Span],
        source: str,
        encoded: Sequence[EncodedSpan] = (),
        *,
        sampled_out: int = 0,
    ) -> Awaitable[Receipt]: ...

    def pass_through_rules(self) -> PassThroughRules | None: ...

    @property
    def queue_full(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Refusal(Exception):
    """A request answered with an error. `status` is the HTTP status; the gRPC transport maps
    it to a gRPC code. `retry_after` is set for retryable refusals."""

    status: int
    code: str
    message: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class OtlpIntake:
    def __init__(self, config: OtlpReceiverConfig, sink: SpanSink, metrics: Metrics) -> None:
        self._config = config
        self._sink = sink
        self._auth = f"Bearer {config.auth_token}".encode() if config.auth_token else None
        self.pending_spans = 0
        self.spans_accepted = 0
        self.spans_rejected = 0
        self._handing_over: set[asyncio.Task[None]] = set()
        self._pass_through = sink.pass_through_rules()
        self._requests = metrics.counter(
            "otlp_receiver_requests_total",
            "OTLP export requests answered, by transport and outcome (ok, partial, or the error).",
            ("transport", "outcome"),
        )
        self._accepted = metrics.counter(
            "otlp_receiver_spans_accepted_total", "Spans received over OTLP and made durable."
        )
        self._rejected = metrics.counter(
            "otlp_receiver_spans_rejected_total",
            "Spans of OTLP requests rejected as invalid (partial success), by reason.",
            ("reason",),
        )
        metrics.gauge_callback(
            "otlp_receiver_pending_spans",
            "Spans received over OTLP that are not yet durable.",
            lambda: {(): float(self.pending_spans)},
        )

    @property
    def max_body_bytes(self) -> int:
        return self._config.max_body_bytes

    def count(self, transport: str, outcome: str) -> None:
        self._requests.labels(transport, outcome).inc()

    def check_auth(self, authorization: str | None) -> None:
        if self._auth is None:
            return
        if not hmac.compare_digest((authorization or "").encode(), self._auth):
            raise Refusal(401, "unauthorized", "missing or wrong bearer token")

    def admit(self) -> None:
        """Refuse early (before the body is read) what would have to wait for room."""
        if self.pending_spans >= self._config.max_pending_spans:
            raise self._busy()
        if self._sink.queue_full:
            raise Refusal(
                503,
                "queue_full",
                "the span disk queue is full while the OTLP endpoint is failing; retry later",
                self._config.retry_after,
            )

    def _busy(self) -> Refusal:
        return Refusal(
            429,
            "too_many_pending_spans",
            f"over {self._config.max_pending_spans} received spans are not yet durable; "
            "retry later",
            self._config.retry_after,
        )

    def inflate(self, body: bytes, encoding: str) -> bytes:
        """The body without its Content-Encoding (gzip, deflate or none), size-limited."""
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            return body
        if encoding not in ("gzip", "deflate"):
            raise Refusal(415, "unsupported_encoding", f"Content-Encoding {encoding!r}: use gzip")
        limit = self._config.max_body_bytes
        inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
        try:
            plain = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            message = f"body is not valid {encoding}: {error}"
            raise Refusal(400, "bad_compression", message) from None
        if len(plain) > limit:
            raise Refusal(413, "body_too_large", f"inflated body is over {limit} bytes")
        if not inflater.eof:
            raise Refusal(400, "bad_compression", f"{encoding} body is truncated")
        return plain

    def decode(self, body: bytes, *, json: bool) -> Decoded:
        try:
            if json:
                decoded = decode_json(body)
            elif self._pass_through is not None:
                decoded = pass_through(body, self._pass_through)
            else:
                decoded = decode_protobuf(body)
        except BadRequestError as error:
            raise Refusal(400, "bad_request", str(error)) from None
        for reason, count in decoded.rejected.items():
            self._rejected.labels(reason).inc(count)
        self.spans_rejected += decoded.rejected_count
        return decoded

    async def accept(self, decoded: Decoded, source: str) -> None:
        """Hand the spans over and wait until they are durable (or refuse, retryable)."""
        count = decoded.accepted_count
        if not count:
            return
        if self.pending_spans and self.pending_spans + count > self._config.max_pending_spans:
            raise self._busy()
        self.pending_spans += count
        # The hand-over runs as its own task: a request that gives up waiting must not cancel
        # it, as the batch it flushes may hold other requests' and files' spans.
        task = asyncio.create_task(self._hand_over(decoded, source, count))
        self._handing_over.add(task)
        task.add_done_callback(_forget_task(self._handing_over))
        done, _ = await asyncio.wait({task}, timeout=self._config.timeout)
        if not done:
            raise Refusal(
                503,
                "not_durable_in_time",
                f"spans not sent or queued within {self._config.timeout:g}s; retry later",
                self._config.retry_after,
            )
        try:
            task.result()
        except (PipelineClosedError, SenderClosedError):
            raise Refusal(
                503, "shutting_down", "the agent is stopping; retry", self._config.retry_after
            ) from None
        self.spans_accepted += count
        self._accepted.inc(count)

    async def _hand_over(self, decoded: Decoded, source: str, count: int) -> None:
        """Pending until the spans are durable, however long the request waits."""
        try:
            receipt = await self._sink.receive(
                decoded.spans, source, decoded.encoded, sampled_out=decoded.sampled_out
            )
            await receipt.wait()
        finally:
            self.pending_spans -= count

    async def close(self) -> None:
        """Stop waiting for hand-overs whose records will not settle now (the pipeline is
        stopping after us: what was submitted is spilled or sent by its own stop)."""
        for task in list(self._handing_over):
            task.cancel()
        if self._handing_over:
            await asyncio.wait(set(self._handing_over), timeout=1.0)


def _forget_task(tasks: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def forget(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an error of an abandoned request is not logged twice

    return forget
