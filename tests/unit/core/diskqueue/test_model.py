"""DiskQueue against a model: random puts, gets, acks, requeues, clean and crash reopens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.diskqueue.queue import DiskQueue

operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 6)),
        st.tuples(st.just("get"), st.integers(1, 5)),
        st.tuples(st.just("ack"), st.integers(0, 20)),
        st.tuples(st.just("requeue"), st.integers(0, 20)),
        st.tuples(st.just("reopen"), st.sampled_from(["close", "abort"])),
    ),
    max_size=40,
)


@dataclass
class Model:
    """What the queue must hand out next; ``fresh`` is the next seq never handed out."""

    records: dict[int, bytes] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    in_flight: list[int] = field(default_factory=list)
    requeued: set[int] = field(default_factory=set)
    fresh: int = 0

    def expected_get(self, max_items: int) -> list[int]:
        again = sorted(self.requeued)[:max_items]
        if len(again) < len(self.requeued):
            return again
        room = max_items - len(again)
        return again + list(range(self.fresh, min(self.fresh + room, len(self.records))))


async def reopen(queue: DiskQueue, directory: Path, how: str, model: Model) -> DiskQueue:
    if how == "close":
        await queue.close()
    else:
        await queue.abort()
    reopened = DiskQueue(directory, frontier_persist_interval=0.001)
    await reopened.open()
    unacked = sorted(set(model.records) - model.acked)
    redelivered = []
    while batch := await reopened.get(1000, timeout=0):
        redelivered += [item.seq for item in batch]
    # Nothing unacked is lost, all comes back in order; only a clean close is exact.
    assert redelivered == sorted(redelivered)
    assert set(unacked) <= set(redelivered)
    if how == "close":
        assert redelivered == unacked
    # Give them back so the model goes on from here: all of them are handed out next.
    reopened.requeue(redelivered)
    model.acked = set(model.records) - set(redelivered)
    model.in_flight, model.requeued, model.fresh = [], set(redelivered), len(model.records)
    return reopened


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=operations)
async def test_queue_matches_the_model(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, object]]
) -> None:
    directory = tmp_path_factory.mktemp("model")
    model = Model()
    queue = DiskQueue(directory, frontier_persist_interval=0.001)
    await queue.open()
    try:
        for action, argument in steps:
            if action == "put":
                assert isinstance(argument, int)
                records = [b"r%d" % (len(model.records) + i) for i in range(argument)]
                seqs = await queue.put_many(records)
                model.records.update(zip(seqs, records, strict=True))
                assert seqs == list(range(len(model.records) - argument, len(model.records)))
            elif action == "get":
                assert isinstance(argument, int)
                items = await queue.get(argument, timeout=0)
                expected = model.expected_get(argument)
                assert [item.seq for item in items] == expected
                assert all(item.data == model.records[item.seq] for item in items)
                model.requeued -= set(expected)
                model.fresh = max([model.fresh, *(seq + 1 for seq in expected)])
                model.in_flight += expected
            elif action == "ack" and model.in_flight:
                assert isinstance(argument, int)
                seq = model.in_flight.pop(argument % len(model.in_flight))
                queue.ack(seq)
                model.acked.add(seq)
            elif action == "requeue" and model.in_flight:
                # A failed send gives back its batch: the most recently handed-out records.
                assert isinstance(argument, int)
                count = 1 + argument % len(model.in_flight)
                batch = model.in_flight[-count:]
                del model.in_flight[-count:]
                queue.requeue(batch)
                model.requeued.update(batch)
            elif action == "reopen":
                assert isinstance(argument, str)
                queue = await reopen(queue, directory, argument, model)
            unacked = len(model.records) - len(model.acked)
            assert queue.stats().depth_items == unacked
    finally:
        await queue.close()
