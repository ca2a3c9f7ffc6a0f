"""Container logs: span lines a service printed to stdout, read where the runtime keeps them.

    decoder = ContainerLogDecoder(inner, runtime="cri", source=pod_source(path), ...)

The wrapper unwraps each runtime line and hands the service's own lines to `inner`, the
decoder of the span format (any of them, `auto` included), which never sees the wrapping:

- **CRI** (containerd, CRI-O; kubelet's `/var/log/pods/...`): ``<RFC3339Nano time> <stdout|stderr>
  <P|F> <text>``. The runtime cuts long lines into `P` (partial) pieces, 16 KiB each, ended by
  one `F` piece; the pieces are joined per stream (stdout and stderr interleave freely).
- **Docker json-file** (``<id>-json.log``): ``{"log":"<text>\\n","stream":"stdout","time":"..."}``.
  Docker cuts long lines at 16 KiB too: a `log` without its trailing newline is a piece.
- ``auto`` decides once per file from its first line (a JSON object with `log` is Docker's, a
  line that parses as CRI is CRI's); a file in neither shape is read as bare lines.

A line that is not in the wrapper's shape is dead-lettered (`not_cri`, `not_docker_json`) like
any malformed record; a line joined from pieces over `max_line_bytes` is `line_too_long` (its
first KiB kept) and the rest of its pieces are dropped. Pieces waiting for their end are part
of `snapshot()`, so a restart between a `P` and its `F` loses and repeats nothing. Pieces whose
end never comes (the container died mid-line) are dead-lettered as `partial_line_unfinished`:
by `expire` once they have waited `partial_timeout_ns` (`spans.orphan_timeout`), and by
`end_of_file` when the file is let go after a rotation.

Resource attributes from the path (`agent.spans.decode.podpath`) are added to every span whose
record does not set them; `service.name` falls back to the container's name when neither the
record nor the config names one.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple

import orjson

from agent.spans.decode.podpath import container_name, pod_attributes
from agent.spans.encode.resources import make_key, share_resource
from agent.spans.model import AttrValue, DeadLetter, DecodeResult, Span
from agent.spans.types import Decoder, DirectItem, LineBlock, ResourceKey

if TYPE_CHECKING:
    from agent.config.tree import Config
    from agent.spans.encode.direct import DirectWriter

Runtime = Literal["cri", "docker", "auto"]
RUNTIMES: Final[tuple[str, ...]] = ("none", "cri", "docker", "auto")
RAW_KEPT: Final = 1024
DEFAULT_PARTIAL_TIMEOUT_NS: Final = 300 * 10**9  # spans.orphan_timeout's default
# <time> <stream> <tag> <text>: the tag is P or F (newer kubelets may add more, ':'-separated).
_CRI_STREAMS: Final = frozenset((b"stdout", b"stderr"))
_CRI_TAGS: Final = frozenset((b"P", b"F"))  # newer kubelets may append ':'-separated flags


class _Held(NamedTuple):
    """A stream's line the runtime cut in pieces, as far as it came, and when it began."""

    data: bytearray
    started_ns: int


class ContainerLogDecoder:
    def __init__(
        self,
        inner: Decoder,
        runtime: Runtime,
        *,
        max_line_bytes: int,
        partial_timeout_ns: int = DEFAULT_PARTIAL_TIMEOUT_NS,
        attributes: dict[str, AttrValue] | None = None,
        fallback_service: str | None = None,
    ) -> None:
        self.inner = inner
        self.format = inner.format
        self._runtime: str | None = None if runtime == "auto" else runtime
        self._max = max_line_bytes
        self._partial_timeout_ns = partial_timeout_ns
        self._attributes = share_resource(dict(attributes or {}))
        self._fallback_service = fallback_service
        self._partial: dict[str, _Held] = {}
        # Streams whose current line went over the limit (already dead-lettered): when.
        self._dropping: dict[str, int] = {}
        self._keys: dict[ResourceKey, ResourceKey] = {}

    # -- the Decoder contract ---------------------------------------------------------------

    def feed(self, line: bytes, now_ns: int) -> DecodeResult:
        return self.feed_many((line,), now_ns)

    def feed_many(self, lines: Iterable[bytes], now_ns: int) -> DecodeResult:
        unwrapped = DecodeResult()
        texts = self._unwrap(lines, now_ns, unwrapped)
        result = self.inner.feed_many(texts, now_ns)
        self._label_spans(result.spans)
        result.merge_counts(unwrapped)
        return result

    def feed_direct(
        self, lines: Sequence[bytes], now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        texts = self._unwrap(lines, now_ns, into)
        items = self.inner.feed_direct(texts, now_ns, direct, into)
        return self._label_items(items)

    def feed_block_direct(
        self, block: LineBlock, now_ns: int, direct: DirectWriter, into: DecodeResult
    ) -> list[DirectItem]:
        return self.feed_direct(block.lines(), now_ns, direct, into)

    def expire(self, now_ns: int) -> DecodeResult:
        result = self.inner.expire(now_ns)
        self._label_spans(result.spans)
        if self._partial or self._dropping:
            self._give_up(now_ns - self._partial_timeout_ns, result)
        return result

    def end_of_file(self) -> DecodeResult:
        result = self.inner.end_of_file()
        self._label_spans(result.spans)
        self._give_up(None, result)
        return result

    def _give_up(self, began_before_ns: int | None, into: DecodeResult) -> None:
        """Pieces still waiting for their line's end (all, or those begun before a time)."""
        for stream, held in list(self._partial.items()):
            if began_before_ns is None or held.started_ns <= began_before_ns:
                del self._partial[stream]
                into.dead.append(_unfinished(stream, held, began_before_ns is None))
        for stream, started_ns in list(self._dropping.items()):
            if began_before_ns is None or started_ns <= began_before_ns:
                del self._dropping[stream]  # its line_too_long is already counted

    def snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        inner = self.inner.snapshot()
        if inner:
            state["inner"] = inner
        if self._partial:
            state["partial"] = {
                stream: base64.b64encode(held.data).decode()
                for stream, held in self._partial.items()
            }
            state["partial_started_ns"] = {
                stream: held.started_ns for stream, held in self._partial.items()
            }
        if self._dropping:
            state["dropping"] = dict(self._dropping)
        if self._runtime is not None:
            state["runtime"] = self._runtime
        return state

    def restore(self, state: dict[str, Any]) -> None:
        inner = state.get("inner")
        if isinstance(inner, dict) and inner:
            self.inner.restore(inner)
        partial = state.get("partial")
        started = state.get("partial_started_ns")
        started = started if isinstance(started, dict) else {}
        if isinstance(partial, dict):
            self._partial = {
                str(stream): _Held(bytearray(base64.b64decode(text)), _ns(started.get(stream)))
                for stream, text in partial.items()
                if isinstance(text, str)
            }
        dropping = state.get("dropping")
        if isinstance(dropping, list):  # before dropping streams carried their time
            self._dropping = {str(stream): _ns(None) for stream in dropping}
        elif isinstance(dropping, dict):
            self._dropping = {str(stream): _ns(ns) for stream, ns in dropping.items()}
        runtime = state.get("runtime")
        if runtime in ("cri", "docker", "bare") and self._runtime is None:
            self._runtime = runtime

    @property
    def pending(self) -> int:
        return self.inner.pending + len(self._partial) + len(self._dropping)

    # -- unwrapping -------------------------------------------------------------------------

    def _unwrap(self, lines: Iterable[bytes], now_ns: int, into: DecodeResult) -> list[bytes]:
        if self._runtime is None:
            lines = list(lines)
            first = next((line for line in lines if line.strip()), None)
            if first is None:  # blank lines only: nothing to decide from yet
                into.skipped += len(lines)
                return []
            self._runtime = _detect(first)
        if self._runtime == "cri":
            return self._cri(lines, now_ns, into)
        if self._runtime == "docker":
            return self._docker(lines, now_ns, into)
        return list(lines)

    def _cri(self, lines: Iterable[bytes], now_ns: int, into: DecodeResult) -> list[bytes]:
        texts: list[bytes] = []
        append = texts.append
        for line in lines:
            parts = line.split(b" ", 3)
            # <time> <stream> <tag> <text>; the text may be empty (and its space missing).
            if len(parts) < 3 or parts[1] not in _CRI_STREAMS or parts[2][:1] not in _CRI_TAGS:
                if line.strip():
                    into.dead.append(_not_wrapped("not_cri", "not a CRI log line", line))
                else:
                    into.skipped += 1
                continue
            text = parts[3] if len(parts) == 4 else b""
            partial = parts[2][:1] == b"P"
            if not partial and not self._partial and not self._dropping:
                append(text[:-1] if text[-1:] == b"\r" else text)
            else:
                self._piece(parts[1].decode(), text, partial, texts, into, now_ns=now_ns)
        return texts

    def _docker(self, lines: Iterable[bytes], now_ns: int, into: DecodeResult) -> list[bytes]:
        """orjson reads the wrapper; no Python-level scan of the line unescapes `log` faster
        (docs/benchmarks.md, "Container logs")."""
        texts: list[bytes] = []
        append = texts.append
        loads = orjson.loads
        holding = bool(self._partial or self._dropping)
        for line in lines:
            try:  # orjson refuses lone surrogates: what it returns always encodes
                record = loads(line)
                data = record["log"].encode()
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                self._not_docker(line, into)
                continue
            if data[-1:] == b"\n" and not holding and data[-2:-1] != b"\r":
                append(data[:-1])  # a whole line and nothing in hand: nearly every line
            else:
                self._docker_piece(record, data, texts, into, now_ns=now_ns)
                holding = bool(self._partial or self._dropping)
        return texts

    def _docker_piece(
        self, record: Any, data: bytes, texts: list[bytes], into: DecodeResult, *, now_ns: int
    ) -> None:
        """A piece Docker cut (no newline), a CRLF line, or any line while a piece is held."""
        partial = data[-1:] != b"\n"
        stream = record.get("stream")
        stream = stream if type(stream) is str else "stdout"
        self._piece(stream, data if partial else data[:-1], partial, texts, into, now_ns=now_ns)

    def _not_docker(self, line: bytes, into: DecodeResult) -> None:
        if line.strip():
            detail = 'not a Docker json-file line ({"log": "...", "stream": ...})'
            into.dead.append(_not_wrapped("not_docker_json", detail, line))
        else:
            into.skipped += 1

    def _piece(
        self,
        stream: str,
        text: bytes,
        partial: bool,
        texts: list[bytes],
        into: DecodeResult,
        *,
        now_ns: int,
    ) -> None:
        """One runtime piece of the service's line on `stream`; a whole line goes to `texts`."""
        if stream in self._dropping:
            if not partial:
                del self._dropping[stream]
            return
        held = self._partial.get(stream)
        if held is None and not partial:
            texts.append(text.removesuffix(b"\r"))
            return
        if held is None:
            held = self._partial[stream] = _Held(bytearray(), now_ns)
        data = held.data
        if len(data) + len(text) > self._max:
            into.dead.append(
                DeadLetter(
                    "line_too_long",
                    f"a line joined from {stream} pieces is over spans.max_line_bytes "
                    f"({self._max}); its first {RAW_KEPT} bytes are kept",
                    bytes(data[:RAW_KEPT]) if data else text[:RAW_KEPT],
                )
            )
            del self._partial[stream]
            if partial:
                self._dropping[stream] = held.started_ns
            return
        data += text
        if not partial:
            del self._partial[stream]
            texts.append(bytes(data).removesuffix(b"\r"))

    # -- resource attributes ----------------------------------------------------------------

    def _label_spans(self, spans: list[Span]) -> None:
        if not self._attributes and self._fallback_service is None:
            return
        shared = self._attributes
        for span in spans:
            own = span.resource
            if span.service_name is None and "service.name" not in own:
                span.service_name = self._fallback_service
            if not own:
                span.resource = shared  # one dict for the file's spans, frozen once
            else:
                for name, value in shared.items():
                    own.setdefault(name, value)

    def _label_items(self, items: list[DirectItem]) -> list[DirectItem]:
        if not self._attributes and self._fallback_service is None:
            return items
        # A file's spans mostly share one key object: compared by identity, not hashed again.
        last_key: ResourceKey | None = None
        for index, item in enumerate(items):
            if type(item) is tuple:
                key, body = item
                if key is not last_key:
                    last_key, labelled = key, self._labelled(key)
                items[index] = (labelled, body)
            else:
                self._label_spans([item])  # type: ignore[list-item]
        return items

    def _labelled(self, key: ResourceKey) -> ResourceKey:
        keys = self._keys
        labelled = keys.get(key)
        if labelled is None:
            if len(keys) >= 256:
                keys.clear()
            labelled = keys[key] = self._merge_key(key)
        return labelled

    def _merge_key(self, key: ResourceKey) -> ResourceKey:
        service, frozen, scope_name, scope_version = key
        own = {name for name, _ in frozen}
        extra = {name: value for name, value in self._attributes.items() if name not in own}
        if service is None and "service.name" not in own:
            service = self._fallback_service
        if not extra:
            return ResourceKey(service, frozen, scope_name, scope_version)
        merged = make_key(service, extra, scope_name, scope_version)
        return ResourceKey(service, tuple(sorted(frozen + merged[1])), scope_name, scope_version)


def unwrapping(inner: Decoder, path: str, config: Config) -> Decoder:
    """`inner` behind the runtime's unwrapping (`spans.container_logs`), with the pod's
    attributes from `path`; `inner` itself when the setting is `none`."""
    runtime = config.spans.container_logs
    if runtime == "none":
        return inner
    attributes = pod_attributes(path)
    return ContainerLogDecoder(
        inner,
        runtime,
        max_line_bytes=config.spans.max_line_bytes,
        partial_timeout_ns=int(config.spans.orphan_timeout * 1e9),
        attributes=attributes,
        fallback_service=None if config.service.name else container_name(attributes),
    )


def _detect(line: bytes) -> str:
    if line[:1] == b"{":
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "bare"
        if isinstance(record, dict) and isinstance(record.get("log"), str):
            return "docker"
        return "bare"
    parts = line.split(b" ", 3)
    cri = len(parts) >= 3 and parts[1] in _CRI_STREAMS and parts[2][:1] in _CRI_TAGS
    return "cri" if cri else "bare"


def _unfinished(stream: str, held: _Held, file_ended: bool) -> DeadLetter:
    why = "the file was let go after a rotation" if file_ended else "spans.orphan_timeout passed"
    detail = (
        f"the runtime's pieces of a {stream} line ({len(held.data)} bytes) never got their "
        f"end ({why}; the container may have died mid-line); its first {RAW_KEPT} bytes are kept"
    )
    return DeadLetter("partial_line_unfinished", detail, bytes(held.data[:RAW_KEPT]))


def _ns(value: object) -> int:
    """A saved start time; a checkpoint without one waits a full timeout from now."""
    return value if type(value) is int else time.time_ns()


def _not_wrapped(reason: str, detail: str, line: bytes) -> DeadLetter:
    return DeadLetter(reason, detail, line[:RAW_KEPT] if len(line) > RAW_KEPT else line)
