"""The exporter's pure parts: queue-safe request records, and reading the server's answers."""

from __future__ import annotations

import contextlib
import gzip

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from agent.spans.export.exporter import (
    error_message,
    pack_request,
    partial_success,
    proto_fields,
    span_count_of,
    unpack_request,
)

PROTOBUF, JSON = "application/x-protobuf", "application/json"


def test_a_record_keeps_its_encoding_and_span_count() -> None:
    body = b"\x0a\x02hi" * 100
    record = pack_request(body, 7, gzipped=True, json=False)
    unpacked = unpack_request(record)
    assert (unpacked.span_count, unpacked.gzipped, unpacked.json) == (7, True, False)
    assert gzip.decompress(unpacked.body) == body == unpacked.plain_body()
    assert unpacked.content_type == PROTOBUF
    assert span_count_of(record) == 7
    plain = unpack_request(pack_request(b"{}", 0, gzipped=False, json=True))
    assert (plain.body, plain.content_type) == (b"{}", JSON)


@pytest.mark.parametrize("record", [b"", b"\x01\x00", b"\x02\x00\x00\x00\x00\x00body"])
def test_a_damaged_or_foreign_record_is_refused(record: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_request(record)


def test_protobuf_partial_success_is_read() -> None:
    response = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=3, error_message="too old")
    )
    assert partial_success(response.SerializeToString(), PROTOBUF) == (3, "too old")
    assert partial_success(ExportTraceServiceResponse().SerializeToString(), PROTOBUF) == (0, "")


def test_json_partial_success_is_read_with_int64_as_string() -> None:
    body = orjson.dumps({"partialSuccess": {"rejectedSpans": "4", "errorMessage": "dup"}})
    assert partial_success(body, JSON + "; charset=utf-8") == (4, "dup")
    assert partial_success(b"{}", JSON) == (0, "")


def test_an_unreadable_success_body_counts_as_full_success() -> None:
    assert partial_success(b"\xff\xff\xff", PROTOBUF) == (0, "")
    assert partial_success(b"not json", JSON) == (0, "")


def test_error_messages_from_status_json_and_text() -> None:
    status = b"\x08\x03\x12\x0dbad trace id!"
    assert error_message(status, PROTOBUF) == "bad trace id!"
    assert error_message(b'{"code": 3, "message": "nope"}', JSON) == "nope"
    assert error_message(b"  plain words \n", "text/plain") == "plain words"
    assert error_message(b"", PROTOBUF) == ""


def test_a_protobuf_status_without_a_message_is_not_read_as_text() -> None:
    assert error_message(b"\x08\x0e", PROTOBUF) == "google.rpc.Status code 14"


@given(st.binary(max_size=200))
def test_the_protobuf_reader_never_raises_anything_but_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        proto_fields(data)
    rejected, message = partial_success(data, PROTOBUF)
    assert isinstance(rejected, int) and isinstance(message, str)
    assert isinstance(error_message(data, PROTOBUF), str)
