"""Requests per protocol and the verdicts of the app's answers (no servers)."""

from __future__ import annotations

import orjson

from agent.messages.message import message_json
from agent.messages.subscribe.model import Entry, Verdict, entry_from_fields
from agent.messages.subscribe.protocols import DaprProtocol, JobfirstProtocol, Reply

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def stored(message_id: str = "msg_1", headers: dict[str, str] | None = None) -> Entry:
    data = message_json(
        message_id,
        "orders",
        {"n": 1},
        headers=headers,
        metadata=None,
        timestamp="2026-01-01T00:00:00Z",
    )
    fields = {b"data": data, b"topic": b"orders", b"timestamp": b"1"}
    for name, value in (headers or {}).items():
        fields[name.encode()] = value.encode()
    return entry_from_fields("orders", b"1-0", fields)


def test_jobfirst_single_sends_the_stored_message_and_its_headers() -> None:
    entry = stored()
    request = JobfirstProtocol("orders").single(entry, TRACEPARENT)
    assert request.body == entry.raw  # unchanged on the first attempt: byte for byte
    assert request.headers["X-Message-Id"] == "msg_1"
    assert request.headers["X-Topic"] == "orders"
    assert request.headers["X-Delivery-Attempt"] == "1"
    assert request.headers["traceparent"] == TRACEPARENT


def test_jobfirst_retry_count_follows_the_attempt() -> None:
    entry = stored()
    entry.attempt = 3
    body = orjson.loads(JobfirstProtocol("orders").single(entry, None).body)
    assert body["retry_count"] == 2 and body["id"] == "msg_1"


def test_jobfirst_verdicts() -> None:
    protocol = JobfirstProtocol("orders")
    assert protocol.verdict(Reply(204, b"")) is Verdict.HANDLED
    assert protocol.verdict(Reply(404, b"")) is Verdict.RETRY
    assert protocol.verdict(Reply(500, b"")) is Verdict.RETRY


def test_jobfirst_bulk_is_an_array_and_may_answer_per_message() -> None:
    entries = [stored("msg_1"), stored("msg_2")]
    protocol = JobfirstProtocol("orders")
    body = orjson.loads(protocol.bulk(entries).body)
    assert [m["id"] for m in body] == ["msg_1", "msg_2"]
    assert protocol.bulk_verdicts(Reply(200, b""), entries) == [Verdict.HANDLED] * 2
    answer = orjson.dumps({"statuses": [{"id": "msg_1", "status": "SUCCESS"}]})
    assert protocol.bulk_verdicts(Reply(200, answer), entries) == [Verdict.HANDLED, Verdict.RETRY]
    assert protocol.bulk_verdicts(Reply(500, b""), entries) == [Verdict.RETRY] * 2


def test_dapr_wraps_the_data_in_a_cloudevent_with_trace_context() -> None:
    entry = stored(headers={"traceparent": TRACEPARENT})
    assert entry.traceparent == TRACEPARENT
    request = DaprProtocol("orders", "pubsub").single(entry, TRACEPARENT)
    event = orjson.loads(request.body)
    assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert event["specversion"] == "1.0" and event["id"] == "msg_1"
    assert event["data"] == {"n": 1} and event["topic"] == "orders"
    assert event["pubsubname"] == "pubsub" and event["traceparent"] == TRACEPARENT


def test_dapr_keeps_a_published_cloudevent() -> None:
    message = message_json(
        "ce-1",
        "orders",
        {"specversion": "1.0", "id": "ce-1", "type": "x", "data": 5},
        headers=None,
        metadata=None,
        timestamp="2026-01-01T00:00:00Z",
    )
    entry = entry_from_fields("orders", b"1-0", {b"data": message})
    event = DaprProtocol("orders", "pubsub").cloudevent(entry, None)
    assert event["type"] == "x" and event["data"] == 5 and event["topic"] == "orders"


def test_dapr_verdicts_as_dapr_defines_them() -> None:
    protocol = DaprProtocol("orders", "pubsub")

    def answer(status: int, body: object = None) -> Verdict:
        return protocol.verdict(Reply(status, orjson.dumps(body) if body is not None else b""))

    assert answer(200) is Verdict.HANDLED
    assert answer(200, {"status": "SUCCESS"}) is Verdict.HANDLED
    assert answer(200, {"status": "RETRY"}) is Verdict.RETRY
    assert answer(200, {"status": "DROP"}) is Verdict.DROPPED
    assert answer(200, {"status": "WHATEVER"}) is Verdict.RETRY
    assert answer(404) is Verdict.DROPPED
    assert answer(500) is Verdict.RETRY


def test_dapr_bulk_statuses_by_entry_id() -> None:
    entries = [stored("msg_1"), stored("msg_2")]
    entries[1].entry_id = b"2-0"
    protocol = DaprProtocol("orders", "pubsub")
    body = orjson.loads(protocol.bulk(entries).body)
    assert [e["entryId"] for e in body["entries"]] == ["1-0", "2-0"]
    answer = orjson.dumps(
        {"statuses": [{"entryId": "1-0", "status": "DROP"}, {"entryId": "2-0", "status": "RETRY"}]}
    )
    verdicts = protocol.bulk_verdicts(Reply(200, answer), entries)
    assert verdicts == [Verdict.DROPPED, Verdict.RETRY]


def test_entries_of_other_layouts_become_messages() -> None:
    entry = entry_from_fields("t", b"1700000000000-0", {b"message_id": b"m1", b"a": b"1"})
    assert entry.message_id == "m1" and entry.message["data"] == {"a": "1"}
    raw = entry_from_fields("t", b"1700000000000-0", {b"body": b"hello"})
    assert raw.message["data"] == "hello" and raw.message_id == "1700000000000-0"
    assert raw.message["timestamp"].startswith("2023-11-14T")


def test_unreadable_entries_are_still_delivered_as_stored() -> None:
    broken = entry_from_fields("t", b"5-0", {b"data": b'{"id":"cut off'})
    assert broken.message == {} and broken.message_id == "5-0"
    assert JobfirstProtocol("t").single(broken, None).body == b'{"id":"cut off'
    not_json = entry_from_fields("t", b"1700000000000-0", {b"data": b"\xff\xfe"})
    assert not_json.message["data"] == {"data": "\ufffd\ufffd"}
    array = entry_from_fields("t", b"1700000000000-0", {b"data": b"[1, 2]"})
    assert array.message["data"] == {"data": "[1, 2]"}
