"""How entries become requests to the application, and how its answers become verdicts.

  jobfirst  POST the Message JSON (retry_count = retries so far) with X-Message-Id, X-Topic and
            X-Delivery-Attempt; 2xx is handled, anything else is retried. Bulk: a JSON array of
            Messages; 2xx handles all, unless the body names per-message statuses.
  dapr      POST a CloudEvents 1.0 envelope (application/cloudevents+json) and honour Dapr's
            answers: 2xx with `{"status": "SUCCESS"}` or no status is handled, `RETRY` retried,
            `DROP` dropped; HTTP 404 dropped (the app has no such route); other statuses retried.
            Bulk: Dapr's bulk-subscribe body `{"entries": [...]}` answered by `{"statuses": [...]}`.

Pure functions: no I/O here (the transport sends, the consumer decides what a verdict means).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import orjson

from agent.messages.subscribe.model import TRACEPARENT, Entry, Verdict

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
_DAPR_STATUSES = {"SUCCESS": Verdict.HANDLED, "RETRY": Verdict.RETRY, "DROP": Verdict.DROPPED}


class Request(NamedTuple):
    body: bytes
    headers: dict[str, str]


class Reply(NamedTuple):
    status: int
    body: bytes


class DeliveryProtocol(Protocol):
    def single(self, entry: Entry, traceparent: str | None) -> Request: ...

    def bulk(self, entries: Sequence[Entry]) -> Request: ...

    def verdict(self, reply: Reply) -> Verdict: ...

    def bulk_verdicts(self, reply: Reply, entries: Sequence[Entry]) -> list[Verdict]: ...


def _json_body(reply: Reply) -> Any:
    if not reply.body:
        return None
    try:
        return orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None


def _statuses(reply: Reply, key: str) -> dict[str, Verdict] | None:
    """Per-entry statuses of a bulk answer `{"statuses": [{key: …, "status": …}]}`."""
    body = _json_body(reply)
    rows = body.get("statuses") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return None
    found: dict[str, Verdict] = {}
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get(key), str):
            status = str(row.get("status", "")).upper()
            found[row[key]] = _DAPR_STATUSES.get(status, Verdict.RETRY)
    return found


def _retries(entry: Entry) -> int | None:
    """retry_count for the Message sent: the first attempt sends it as stored (no re-encoding;
    a JobFirst publisher may have set its own count), later ones the retries so far."""
    return entry.attempt - 1 if entry.attempt > 1 else None


class JobfirstProtocol:
    def __init__(self, topic: str) -> None:
        self.topic = topic

    def single(self, entry: Entry, traceparent: str | None) -> Request:
        headers = {
            "Content-Type": JSON,
            "X-Message-Id": entry.message_id,
            "X-Topic": self.topic,
            "X-Delivery-Attempt": str(entry.attempt),
        }
        if traceparent:
            headers[TRACEPARENT] = traceparent
        return Request(entry.message_bytes(retry_count=_retries(entry)), headers)

    def bulk(self, entries: Sequence[Entry]) -> Request:
        body = b"[" + b",".join(e.message_bytes(retry_count=_retries(e)) for e in entries) + b"]"
        return Request(body, {"Content-Type": JSON, "X-Topic": self.topic})

    def verdict(self, reply: Reply) -> Verdict:
        return Verdict.HANDLED if 200 <= reply.status < 300 else Verdict.RETRY

    def bulk_verdicts(self, reply: Reply, entries: Sequence[Entry]) -> list[Verdict]:
        whole = self.verdict(reply)
        statuses = _statuses(reply, "id") if whole is Verdict.HANDLED else None
        if statuses is None:
            return [whole] * len(entries)
        return [statuses.get(entry.message_id, Verdict.RETRY) for entry in entries]


class DaprProtocol:
    def __init__(self, topic: str, pubsub_name: str) -> None:
        self.topic = topic
        self.pubsub_name = pubsub_name

    def cloudevent(self, entry: Entry, traceparent: str | None) -> dict[str, Any]:
        """The published CloudEvent when the message is one, else Dapr's wrapper around it."""
        data = entry.message.get("data")
        if isinstance(data, dict) and data.get("specversion"):
            event = dict(data)
        else:
            content_type = entry.headers.get("content-type", JSON)
            event = {
                "specversion": "1.0",
                "id": entry.message_id,
                "source": "sidecar-agent",
                "type": "com.dapr.event.sent",
                "datacontenttype": content_type,
                "data": data,
                "time": entry.message.get("timestamp"),
            }
        event.setdefault("topic", self.topic)
        event.setdefault("pubsubname", self.pubsub_name)
        if traceparent:
            event["traceparent"] = traceparent
            event["traceid"] = traceparent
        return event

    def single(self, entry: Entry, traceparent: str | None) -> Request:
        headers = {"Content-Type": CLOUDEVENTS_JSON}
        if traceparent:
            headers[TRACEPARENT] = traceparent
        return Request(orjson.dumps(self.cloudevent(entry, traceparent)), headers)

    def bulk(self, entries: Sequence[Entry]) -> Request:
        body = {
            "id": str(uuid.uuid4()),
            "entries": [
                {
                    "entryId": entry.entry_id.decode(),
                    "event": self.cloudevent(entry, entry.traceparent),
                    "contentType": CLOUDEVENTS_JSON,
                    "metadata": {},
                }
                for entry in entries
            ],
            "metadata": {},
            "pubsubname": self.pubsub_name,
            "topic": self.topic,
            "type": "com.dapr.event.sent",
        }
        return Request(orjson.dumps(body), {"Content-Type": JSON})

    def verdict(self, reply: Reply) -> Verdict:
        if reply.status == 404:
            return Verdict.DROPPED
        if not 200 <= reply.status < 300:
            return Verdict.RETRY
        body = _json_body(reply)
        status = body.get("status") if isinstance(body, dict) else None
        if not status:
            return Verdict.HANDLED
        return _DAPR_STATUSES.get(str(status).upper(), Verdict.RETRY)

    def bulk_verdicts(self, reply: Reply, entries: Sequence[Entry]) -> list[Verdict]:
        if not 200 <= reply.status < 300:
            return [self.verdict(reply)] * len(entries)
        statuses = _statuses(reply, "entryId")
        if statuses is None:
            return [Verdict.HANDLED] * len(entries)
        return [statuses.get(entry.entry_id.decode(), Verdict.RETRY) for entry in entries]


def protocol_for(kind: str, topic: str, pubsub_name: str) -> DeliveryProtocol:
    if kind == "dapr":
        return DaprProtocol(topic, pubsub_name)
    return JobfirstProtocol(topic)
