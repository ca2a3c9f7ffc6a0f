"""Container runtime logs unwrapped before the span format: CRI and Docker json-file lines as
containerd and Docker write them, partial lines, streams interleaved, bad wrapper lines, the
state of a line cut in pieces across a restart, and the pod attributes from the path."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spans.decode.container import ContainerLogDecoder, Runtime
from agent.spans.decode.podpath import pod_attributes
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.model import DecodeResult, Span
from tests.unit.spans.samples.spanjson import START, record

STAMP = b"2026-12-05T10:00:00.123456789Z"
POD_LOG = "/var/log/pods/shop_checkout-7d9f_0f2c9a1e-5b1d-4c1e-9a8e-1f2e3d4c5b6a/api/2.log"
POD_ATTRIBUTES = {
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-7d9f",
    "k8s.pod.uid": "0f2c9a1e-5b1d-4c1e-9a8e-1f2e3d4c5b6a",
    "k8s.container.name": "api",
    "k8s.container.restart_count": 2,
}


def span_line(name: str, **fields: object) -> bytes:
    return orjson.dumps(record(name=name, **fields))


def cri(text: bytes, stream: str = "stdout", tag: str = "F") -> bytes:
    return STAMP + f" {stream} {tag} ".encode() + text


def docker(text: str, stream: str = "stdout") -> bytes:
    return orjson.dumps({"log": text, "stream": stream, "time": "2026-12-05T10:00:00.1234Z"})


def decoder(
    runtime: Runtime, path: str = "/logs/x.log", limit: int = 1 << 20
) -> ContainerLogDecoder:
    inner = make_decoder("span-json", orphan_timeout_ns=10**12, default_service=None)
    return ContainerLogDecoder(
        inner,
        runtime,
        max_line_bytes=limit,
        attributes=pod_attributes(path),
        fallback_service=pod_attributes(path).get("k8s.container.name"),  # type: ignore[arg-type]
    )


def names(result: DecodeResult) -> list[str]:
    return [span.name for span in result.spans]


def test_cri_partial_lines_are_joined_per_stream_with_stderr_interleaved() -> None:
    whole = span_line("joined", attributes={"big": "x" * 40_000})
    pieces = [whole[i : i + 16_384] for i in range(0, len(whole), 16_384)]
    lines = [cri(piece, tag="P") for piece in pieces[:-1]]
    lines.insert(1, cri(span_line("on stderr"), "stderr"))  # between two stdout pieces
    lines.append(cri(pieces[-1]))
    lines.append(cri(span_line("after")))
    result = decoder("cri").feed_many(lines, 0)
    assert names(result) == ["on stderr", "joined", "after"]
    assert result.spans[1].attributes["big"] == "x" * 40_000
    assert result.dead == []


def test_docker_lines_are_unescaped_exactly_and_split_lines_joined() -> None:
    whole = span_line("tricky", attributes={"q": 'a "quoted" \\ tab\t é 😀 \u2028'})
    text = whole.decode() + "\n"
    lines = [docker(text[:100]), docker(text[100:])]  # Docker cut it: no newline in the first
    lines.append(docker(span_line("crlf").decode() + "\r\n", "stderr"))
    result = decoder("docker").feed_many(lines, 0)
    assert names(result) == ["tricky", "crlf"]
    assert result.spans[0].attributes["q"] == 'a "quoted" \\ tab\t é 😀 \u2028'


@pytest.mark.parametrize(
    ("runtime", "line", "reason"),
    [
        ("cri", b"not a cri line at all", "not_cri"),
        ("cri", b"2026-12-05T10:00:00Z stdin F text", "not_cri"),
        ("docker", b'{"message": "no log key"}', "not_docker_json"),
        ("docker", b"plain text", "not_docker_json"),
        ("docker", b'{"log": 5}', "not_docker_json"),
    ],
)
def test_a_line_not_in_the_wrappers_shape_is_dead_lettered(
    runtime: Runtime, line: bytes, reason: str
) -> None:
    wrap = cri if runtime == "cri" else (lambda text: docker(text.decode() + "\n"))
    result = decoder(runtime).feed_many([line, wrap(span_line("fine"))], 0)
    assert [dead.reason for dead in result.dead] == [reason]
    assert result.dead[0].raw == line
    assert names(result) == ["fine"]


def test_a_joined_line_over_the_limit_is_dead_lettered_and_the_next_line_reads() -> None:
    decode = decoder("cri", limit=1000)
    lines = [
        cri(b"x" * 600, tag="P"),
        cri(b"y" * 600, tag="P"),
        cri(b"z" * 10),
        cri(span_line("ok")),
    ]
    result = decode.feed_many(lines, 0)
    assert [dead.reason for dead in result.dead] == ["line_too_long"]
    assert result.dead[0].raw == b"x" * 600
    assert names(result) == ["ok"]
    assert decode.pending == 0


def test_a_line_cut_in_pieces_survives_a_restart_between_them() -> None:
    whole = span_line("across a restart")
    first = decoder("cri")
    assert first.feed_many([cri(whole[:30], tag="P")], 0).spans == []
    assert first.pending == 1  # the checkpoint must carry the piece
    state = orjson.loads(orjson.dumps(first.snapshot()))  # JSON, as the checkpoint file has it
    second = decoder("cri")
    second.restore(state)
    assert names(second.feed_many([cri(whole[30:])], 0)) == ["across a restart"]
    assert second.pending == 0


def test_auto_decides_per_file_from_its_first_line() -> None:
    assert names(decoder("auto").feed_many([cri(span_line("c"))], 0)) == ["c"]
    assert names(decoder("auto").feed_many([docker(span_line("d").decode() + "\n")], 0)) == ["d"]
    assert names(decoder("auto").feed_many([span_line("bare")], 0)) == ["bare"]


def test_pod_attributes_reach_general_and_direct_spans_under_the_records_own() -> None:
    lines = [
        cri(span_line("plain")),
        cri(span_line("own", service_name="billing", resource={"k8s.pod.name": "from-record"})),
    ]
    general = decoder("cri", POD_LOG).feed_many(lines, 0).spans
    assert general[0].resource == POD_ATTRIBUTES and general[0].service_name == "api"
    assert general[1].resource["k8s.pod.name"] == "from-record"
    assert general[1].service_name == "billing"
    direct_line = cri(span_line("direct", duration_ms=None, end_time_unix_nano=START + 10**6))
    into = DecodeResult()
    items = decoder("cri", POD_LOG).feed_direct([direct_line, *lines], 0, DirectWriter(None), into)
    assert not isinstance(items[0], Span), "the direct path took the plain line"
    service, frozen, _, _ = items[0][0]
    assert service == "api"
    assert dict(frozen) == {k: (type(v).__name__, v) for k, v in POD_ATTRIBUTES.items()}
    own = items[2]  # the record with its own resource: the general path, as a Span
    assert isinstance(own, Span) and own.resource["k8s.pod.name"] == "from-record"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (POD_LOG, POD_ATTRIBUTES),
        (POD_LOG + ".20261205-100000", POD_ATTRIBUTES),  # kubelet's rotation
        (POD_LOG + ".20261205-100000.gz", POD_ATTRIBUTES),
        (
            "/var/log/containers/checkout-7d9f_shop_api-" + "ab" * 32 + ".log",
            {
                "k8s.namespace.name": "shop",
                "k8s.pod.name": "checkout-7d9f",
                "k8s.container.name": "api",
                "container.id": "ab" * 32,
            },
        ),
        (
            "/var/lib/docker/containers/" + "cd" * 32 + "/" + "cd" * 32 + "-json.log.1",
            {"container.id": "cd" * 32},
        ),
        ("/var/log/app/spans.log", {}),
    ],
)
def test_pod_attributes_from_the_path(path: str, expected: dict[str, object]) -> None:
    assert pod_attributes(path) == expected


@given(st.lists(st.binary(max_size=200), max_size=20), st.sampled_from(["cri", "docker", "auto"]))
@settings(max_examples=300, deadline=None)
def test_any_bytes_become_spans_dead_letters_or_skips_never_errors(
    lines: list[bytes], runtime: Runtime
) -> None:
    decode = decoder(runtime, limit=300)
    result = decode.feed_many(lines, 0)
    decode.restore(orjson.loads(orjson.dumps(decode.snapshot())))
    assert all(dead.reason for dead in result.dead)
