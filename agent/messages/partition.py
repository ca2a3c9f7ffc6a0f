"""Partitioned topics: one topic spread over N streams, so one hot topic can use a whole cluster.

`messages.topics.<name>.partitions: N` writes the topic's messages to N streams, the topic's
key template plus `:<p>` (`stream:orders:0` … `stream:orders:7`). A message's partition is
CRC32 of its key modulo N, so every message with one key lands in one stream, in order; a
message without a key goes round robin (spread evenly, no order promised between partitions).

The key is the message's `partitionKey` (Dapr's name for it): `metadata.partitionKey` in the
Message JSON, which the publish envelope's `key` fills, or a `partitionKey` header (Dapr's
`?metadata.partitionKey=`). The partition streams carry no `{...}` hash tag on purpose: with
one, every partition would hash to the same cluster slot and so to one master.
"""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Sequence
from typing import Protocol

from agent.config.tree import TopicConfig
from agent.messages.codec import PARTITION_KEY, BodyError, Envelope
from agent.messages.layout import EncodedEntries, TopicLayout
from agent.messages.message import AcceptTime


class StreamLayout(Protocol):
    """What the intake needs of a topic's layout, partitioned or not."""

    @property
    def topic(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def stream(self) -> bytes:
        """The one stream of every entry; b"" when entries may go to several."""

    def encode(
        self,
        envelopes: Sequence[Envelope],
        ids: Sequence[str],
        at: AcceptTime,
        *,
        escape: bool = True,
    ) -> EncodedEntries: ...


def partition_stream(key_template: str, partition: int) -> str:
    return f"{key_template}:{partition}"


def partition_key(envelope: Envelope) -> str | None:
    """The envelope's partition key: metadata's partitionKey, else the header of that name."""
    _, _, headers, metadata = envelope
    if metadata is not None:
        key = metadata.get(PARTITION_KEY)
        if isinstance(key, str):
            return key
    if headers is not None:
        return headers.get(PARTITION_KEY)
    return None


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike hash()): CRC32 of the UTF-8 key."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


class PartitionedLayout:
    """A topic over `partitions` streams; each entry encoded by its partition's layout."""

    def __init__(self, topic: str, config: TopicConfig) -> None:
        self.topic = topic
        self.kind = config.layout
        self.stream = b""
        self.partitions = [
            TopicLayout(topic, dataclasses.replace(config, key=partition_stream(config.key, p)))
            for p in range(config.partitions)
        ]
        self._round_robin = itertools.cycle(range(config.partitions))

    def choose(self, envelopes: Sequence[Envelope]) -> list[int]:
        count = len(self.partitions)
        chosen = []
        for envelope in envelopes:
            key = partition_key(envelope)
            chosen.append(next(self._round_robin) if key is None else partition_of(key, count))
        return chosen

    def encode(
        self,
        envelopes: Sequence[Envelope],
        ids: Sequence[str],
        at: AcceptTime,
        *,
        escape: bool = True,
    ) -> EncodedEntries:
        """The entries grouped by partition (each group in request order, so order per key
        holds), with `order` and `runs` saying where each entry came from and went."""
        chosen = self.choose(envelopes)
        if len(set(chosen)) == 1:
            layout = self.partitions[chosen[0]]
            encoded = layout.encode(envelopes, ids, at, escape=escape)
            return EncodedEntries(encoded.blob, encoded.ends, layout.stream)
        groups: dict[int, list[int]] = {}
        for index, partition in enumerate(chosen):
            groups.setdefault(partition, []).append(index)
        blobs: list[bytes] = []
        ends: list[int] = []
        order: list[int] = []
        runs: list[tuple[bytes, int]] = []
        first_error: BodyError | None = None
        for partition in sorted(groups):
            indexes = groups[partition]
            layout = self.partitions[partition]
            try:
                encoded = layout.encode(
                    [envelopes[i] for i in indexes], [ids[i] for i in indexes], at, escape=escape
                )
            except BodyError as error:
                _rename_entry(error, indexes)
                if first_error is None or (error.index or 0) < (first_error.index or 0):
                    first_error = error  # name the request's first bad entry, as unpartitioned
                continue
            offset = ends[-1] if ends else 0
            ends.extend([end + offset for end in encoded.ends])
            blobs.append(encoded.blob)
            order.extend(indexes)
            runs.append((layout.stream, len(indexes)))
        if first_error is not None:
            raise first_error
        return EncodedEntries(b"".join(blobs), ends, b"", order=order, runs=runs)


def _rename_entry(error: BodyError, indexes: list[int]) -> None:
    """The error names the entry by its place in the partition's share: give the request's."""
    index = error.index
    if index is not None and 0 <= index < len(indexes):
        error.message = error.message.replace(f"entry {index}:", f"entry {indexes[index]}:")
        error.args = (error.message,)
        error.index = indexes[index]


def layout_for(topic: str, config: TopicConfig) -> StreamLayout:
    if config.partitions > 1:
        return PartitionedLayout(topic, config)
    return TopicLayout(topic, config)
