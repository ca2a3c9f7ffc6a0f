"""Container runtime logs unwrapped before the span format: CRI and Docker json-file lines as
containerd and Docker write them, partial lines, streams interleaved, bad wrapper lines, the
state of a line cut in pieces across a restart, and the pod attributes from the path."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.spans.decode.container import ContainerLogDecoder, Runtime
from agent.spans.decode.podpath import pod_attributes
from agent.spans.decode.registry import make_decoder
from agent.spans.encode.direct import DirectWriter
from agent.spans.model import DecodeResult, Span
from agent.spans.types import DirectItem
from tests.unit.spans.samples.spanjson import START, record

STAMP = b"2026-12-05T10:00:00.123456789Z"
TIMEOUT_NS = 5 * 10**9
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
    runtime: Runtime, path: str = "/logs/x.log", limit: int = 1 << 20, fmt: str = "span-json"
) -> ContainerLogDecoder:
    inner = make_decoder(fmt, orphan_timeout_ns=10**12, default_service=None)
    return ContainerLogDecoder(
        inner,
        runtime,
        max_line_bytes=limit,
        partial_timeout_ns=TIMEOUT_NS,
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


def test_cri_tags_with_flags_after_a_colon_are_read() -> None:
    whole = span_line("flagged")
    lines = [cri(whole[:20], tag="P:x"), cri(whole[20:], tag="F:x")]
    assert names(decoder("cri").feed_many(lines, 0)) == ["flagged"]


def test_a_line_just_at_the_limit_is_kept() -> None:
    whole = span_line("edge")
    pieces = [cri(whole[:10], tag="P"), cri(whole[10:20], tag="P"), cri(whole[20:])]
    result = decoder("cri", limit=len(whole)).feed_many(pieces, 0)
    assert names(result) == ["edge"] and result.dead == []
    over = decoder("cri", limit=len(whole) - 1).feed_many(pieces, 0)
    assert [dead.reason for dead in over.dead] == ["line_too_long"]


def test_a_lone_surrogate_in_a_docker_line_is_not_dockers() -> None:
    """Docker's Go encoder writes invalid UTF-8 as U+FFFD, never a lone surrogate escape."""
    lone = b'{"log":"{\\"trace_id\\":\\"\\ud800\\"}\\n","stream":"stdout"}'
    result = decoder("docker").feed_many([lone, docker(span_line("ok").decode() + "\n")], 0)
    assert [dead.reason for dead in result.dead] == ["not_docker_json"]
    assert names(result) == ["ok"]


@pytest.mark.parametrize("runtime", ["cri", "docker"])
def test_pieces_whose_end_never_comes_are_dead_lettered_after_the_timeout(
    runtime: Runtime,
) -> None:
    """The container died mid-line: its piece is neither held forever nor lost silently."""
    whole = span_line("cut short")
    piece = cri(whole[:40], tag="P") if runtime == "cri" else docker(whole[:40].decode())
    decode = decoder(runtime)
    assert decode.feed_many([piece], 1000).spans == []
    assert decode.expire(1000 + TIMEOUT_NS - 1).dead == []
    assert decode.pending == 1
    result = decode.expire(1000 + TIMEOUT_NS)
    assert [dead.reason for dead in result.dead] == ["partial_line_unfinished"]
    assert result.dead[0].raw == whole[:40]
    assert "stdout" in result.dead[0].detail and "orphan_timeout" in result.dead[0].detail
    assert decode.pending == 0
    assert names(
        decode.feed_many(
            [
                cri(span_line("next"))
                if runtime == "cri"
                else docker(span_line("next").decode() + "\n")
            ],
            2 * TIMEOUT_NS,
        )
    ) == ["next"]


def test_the_timeout_counts_from_a_lines_first_piece_across_a_restart() -> None:
    first = decoder("cri")
    first.feed_many([cri(b'{"a":', tag="P")], 1000)
    first.feed_many([cri(b'"b",', tag="P")], 1000 + TIMEOUT_NS - 10)  # later pieces: same line
    second = decoder("cri")
    second.restore(orjson.loads(orjson.dumps(first.snapshot())))
    result = second.expire(1000 + TIMEOUT_NS)
    assert [dead.raw for dead in result.dead] == [b'{"a":"b",']


def test_a_dropped_over_long_line_without_its_end_stops_being_pending() -> None:
    decode = decoder("cri", limit=100)
    result = decode.feed_many([cri(b"x" * 80, tag="P"), cri(b"y" * 80, tag="P")], 0)
    assert [dead.reason for dead in result.dead] == ["line_too_long"]
    assert decode.pending == 1  # the rest of the line is still to be skipped
    assert decode.expire(TIMEOUT_NS).dead == [], "already counted as line_too_long"
    assert decode.pending == 0


def test_pieces_at_the_end_of_a_file_let_go_are_dead_lettered() -> None:
    """A rotated file read to its end gets no more lines: what it holds is given up now."""
    decode = decoder("cri")
    decode.feed_many([cri(span_line("whole")), cri(b'{"on stderr":', "stderr", tag="P")], 0)
    result = decode.end_of_file()
    assert [(dead.reason, dead.raw) for dead in result.dead] == [
        ("partial_line_unfinished", b'{"on stderr":')
    ]
    assert "rotation" in result.dead[0].detail
    assert decode.pending == 0 and decode.end_of_file().dead == []


def test_a_half_read_otel_sdk_object_at_the_end_of_a_file_is_dead_lettered() -> None:
    decode = decoder("cri", fmt="otel-sdk")
    decode.feed_many([cri(b"{"), cri(b'    "name": "cut",')], 0)
    assert decode.pending == 1
    result = decode.end_of_file()
    assert [dead.reason for dead in result.dead] == ["truncated_object"]
    assert decode.pending == 0


def test_auto_decides_per_file_from_its_first_line() -> None:
    assert names(decoder("auto").feed_many([cri(span_line("c"))], 0)) == ["c"]
    assert names(decoder("auto").feed_many([docker(span_line("d").decode() + "\n")], 0)) == ["d"]
    assert names(decoder("auto").feed_many([span_line("bare")], 0)) == ["bare"]


def test_auto_decides_from_the_first_line_that_is_not_blank() -> None:
    decode = decoder("auto")
    assert decode.feed_many([b"", b"  "], 0).skipped == 2  # nothing to decide from yet
    result = decode.feed_many([b"", cri(span_line("c")), b"bare text"], 0)
    assert names(result) == ["c"]
    assert [dead.reason for dead in result.dead] == ["not_cri"]


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


# -- Docker's `log` unescaped exactly, whatever the encoder escaped ----------------------------

LOG_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\/<>&\t\r\b\f\x00\x1f\x7f é€😀\u2028\u2029{}:,'),
        st.characters(codec="utf-8", exclude_characters="\n"),  # Docker cuts lines at newlines
    ),
    max_size=40,
)


def go_json_string(text: str) -> bytes:
    """A JSON string as Docker's Go encoder writes it: HTML-safe, U+2028/9 escaped."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif char < " " or char in "<>&\u2028\u2029":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return ("".join(out) + '"').encode()


ENCODERS = {
    "go": go_json_string,
    "orjson": orjson.dumps,  # raw UTF-8, nothing escaped that need not be
    "ascii": lambda text: json.dumps(text).encode(),  # \uXXXX, surrogate pairs for 😀
}


class SeenTexts:
    """Test double for a span format: records the texts it is given, decodes nothing."""

    format = "span-json"
    pending = 0

    def __init__(self) -> None:
        self.texts: list[bytes] = []

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult:
        self.texts.extend(lines)
        return DecodeResult()

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: object, into: DecodeResult
    ) -> list[DirectItem]:
        self.texts.extend(lines)
        return []


@st.composite
def docker_log(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Docker json-file lines of stdout and stderr lines, some cut in pieces, the two streams
    interleaved piece by piece; and the texts the service wrote, in the order they end."""
    encode = ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))]
    queues: dict[str, list[tuple[str, bool]]] = {}
    for stream in ("stdout", "stderr"):
        queue = queues[stream] = []
        for text in draw(st.lists(LOG_TEXT, max_size=6)):
            cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=3)))
            bounds = [0, *(cut for cut in cuts if cut < len(text)), len(text)]
            pieces = [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]
            queue += [(piece, False) for piece in pieces[:-1]] + [(pieces[-1] + "\n", True)]
    lines: list[bytes] = []
    ended: list[bytes] = []
    held = {"stdout": "", "stderr": ""}
    while queues["stdout"] or queues["stderr"]:
        stream = draw(st.sampled_from([name for name, queue in queues.items() if queue]))
        piece, last = queues[stream].pop(0)
        lines.append(
            b'{"log":'
            + encode(piece)
            + f',"stream":"{stream}",'.encode()
            + b'"time":"2026-12-05T10:00:00.123456789Z"}'
        )
        held[stream] += piece
        if last:
            text = held[stream][:-1]
            ended.append(text.removesuffix("\r").encode())
            held[stream] = ""
    return lines, ended


@given(docker_log(), st.integers(1, 5), st.booleans())
@settings(max_examples=400, deadline=None)
def test_docker_lines_unwrap_to_exactly_the_text_the_service_wrote(
    log: tuple[list[bytes], list[bytes]], batch: int, direct: bool
) -> None:
    lines, expected = log
    seen = SeenTexts()
    decode = ContainerLogDecoder(seen, "docker", max_line_bytes=1 << 20)  # type: ignore[arg-type]
    for start in range(0, len(lines), batch):
        part = lines[start : start + batch]
        if direct:
            decode.feed_direct(part, 0, DirectWriter(None), DecodeResult())
        else:
            assert decode.feed_many(part, 0).dead == []
    assert seen.texts == expected
    assert decode.pending == 0
