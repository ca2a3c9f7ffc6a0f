"""Which heads the publish fast lane serves itself; everything else must parse to None."""

from __future__ import annotations

import pytest

from agent.messages.publish import BULK, DAPR, MESSAGES
from agent.messages.publishhead import MAX_HEAD_BYTES, parse_head

LIMIT = 1024 * 1024
PLAIN = b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 12"


def head(line: bytes, fields: bytes = PLAIN) -> bytes:
    if fields is not PLAIN:
        fields = b"Host: x\r\n" + fields
    return line + b"\r\n" + fields


@pytest.mark.parametrize(
    ("path", "route", "topic"),
    [
        (b"/v1/topics/orders/messages", MESSAGES, "orders"),
        (b"/v1.0/publish/pubsub/a.b:c-d_e", DAPR, "a.b:c-d_e"),
        (b"/v1.0-alpha1/publish/bulk/pubsub/orders", BULK, "orders"),
        (b"/v1/topics/-bad/messages", MESSAGES, "-bad"),  # the core answers 400 bad_topic
    ],
)
def test_the_three_routes_are_served(path: bytes, route: str, topic: str) -> None:
    parsed = parse_head(head(b"POST " + path + b" HTTP/1.1"), LIMIT)
    assert parsed is not None
    assert (parsed.request.route, parsed.request.topic) == (route, topic)
    assert parsed.request.content_length == 12 and parsed.keep_alive
    assert parsed.request.query == {} and parsed.request.query_string == ""


def test_ack_and_the_headers_the_core_reads() -> None:
    fields = (
        b"content-type:  application/msgpack  \r\nAuthorization: Bearer t\r\n"
        b"traceparent: 00-abc-def-01\r\nConnection: Close\r\nContent-Length: 0"
    )
    parsed = parse_head(head(b"POST /v1/topics/t/messages?ack=memory HTTP/1.1", fields), LIMIT)
    assert parsed is not None
    request = parsed.request
    assert request.query == {"ack": "memory"} and request.query_string == "ack=memory"
    assert request.content_type == "application/msgpack"
    assert request.authorization == "Bearer t" and request.traceparent == "00-abc-def-01"
    assert request.content_length == 0 and not parsed.keep_alive


@pytest.mark.parametrize(
    "line",
    [
        b"GET /v1/topics/t/messages HTTP/1.1",
        b"post /v1/topics/t/messages HTTP/1.1",
        b"POST /v1/topics/t/messages HTTP/1.0",
        b"POST /v1/topics/t/messages HTTP/2.0",
        b"POST /v1/topics/t%41/messages HTTP/1.1",
        b"POST /v1/topics/../messages HTTP/1.1",
        b"POST /v1/topics/./messages HTTP/1.1",
        b"POST /v1/topics//messages HTTP/1.1",
        b"POST /v1/topics/t/messages/ HTTP/1.1",
        b"POST /v1/topics/t/messages? HTTP/1.1",
        b"POST /v1/topics/t/messages?ack=disk&x=1 HTTP/1.1",
        b"POST /v1/topics/t/messages?metadata.a=1 HTTP/1.1",
        b"POST /v1.0/publish/p/t?ack=DISK HTTP/1.1",
        b"POST /v1/dlq/t HTTP/1.1",
        b"POST /v1.0/publish/t HTTP/1.1",
        b"POST http://h/v1/topics/t/messages HTTP/1.1",
        b"POST  /v1/topics/t/messages HTTP/1.1",
        b"POST /v1/topics/t\xc3\xa9/messages HTTP/1.1",
        b"POST /v1/topics/t/messages HTTP/1.1 ",
    ],
)
def test_other_request_lines_go_to_aiohttp(line: bytes) -> None:
    assert parse_head(head(line), LIMIT) is None


@pytest.mark.parametrize(
    "fields",
    [
        b"Content-Type: application/json",  # no Content-Length
        b"Content-Length: 12\r\nHost: y",  # a second Host
        b"Content-Length: 12\r\nContent-Length: 12",
        b"Content-Length: -1",
        b"Content-Length: 1e3",
        b"Content-Length: 12345678901",
        b"Content-Length: %d" % (LIMIT + 1),
        b"Content-Length: 12\r\nTransfer-Encoding: chunked",
        b"Content-Length: 12\r\nContent-Encoding: gzip",
        b"Content-Length: 12\r\nContent-Encoding: identity",
        b"Content-Length: 12\r\nExpect: 100-continue",
        b"Content-Length: 12\r\nUpgrade: websocket",
        b"Content-Length: 12\r\nConnection: upgrade",
        b"Content-Length: 12\r\nContent-Type: a\r\ncontent-type: b",
        b"Content-Length: 12\r\nAuthorization: a\r\nAuthorization: b",
        b"Content-Length: 12\r\ntraceparent: a\r\ntraceparent: b",
        b"Content-Length: 12\r\nX-A: 1\r\n folded",
        b"Content-Length: 12\r\nX-A: a\rb",
        b"Content-Length: 12\r\nX-A: a\nb",
        b"Content-Length: 12\r\nX-A: \xc3\xa9",
        b"Content-Length: 12\r\nX-A: a\x00",
        b"Content-Length: 12\r\nX A: a",
        b"Content-Length: 12\r\nX-A : a",
        b"Content-Length: 12\r\n: a",
        b"Content-Length: 12\r\nno colon",
        b"Content-Length: 12\r\n",
        b"Content-Length: 12\r\nX-A: " + b"a" * MAX_HEAD_BYTES,
        b"Content-Length: 12" + b"\r\nX-A: a" * 64,
    ],
)
def test_other_headers_go_to_aiohttp(fields: bytes) -> None:
    assert parse_head(head(b"POST /v1/topics/t/messages HTTP/1.1", fields), LIMIT) is None


def test_a_head_without_host_goes_to_aiohttp() -> None:
    assert parse_head(b"POST /v1/topics/t/messages HTTP/1.1\r\nContent-Length: 1", LIMIT) is None


def test_a_body_at_the_limit_is_served() -> None:
    fields = b"Content-Length: %d" % LIMIT
    assert parse_head(head(b"POST /v1/topics/t/messages HTTP/1.1", fields), LIMIT) is not None
