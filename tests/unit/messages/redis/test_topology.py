"""The slot map from CLUSTER SLOTS replies and redirect errors, as a real server words them."""

from __future__ import annotations

import pytest

from agent.messages.redis.topology import Node, Redirect, SlotMap, TopologyError, parse_redirect


def cluster_slots_reply() -> list[object]:
    return [
        [0, 5460, [b"127.0.0.1", 7000, b"id-a"], [b"127.0.0.1", 7003, b"id-d"]],
        [5461, 10922, [b"", 7001, b"id-b"]],  # empty host: the node asked
        [10923, 16383, [b"127.0.0.1", 7002, b"id-c"]],
    ]


def test_cluster_slots_become_a_map_of_masters() -> None:
    slots = SlotMap.from_cluster_slots(cluster_slots_reply(), Node("10.0.0.9", 7001))
    assert slots.owner(0) == Node("127.0.0.1", 7000)
    assert slots.owner(5461) == Node("10.0.0.9", 7001)
    assert slots.owner(16383) == Node("127.0.0.1", 7002)
    assert slots.node_for(b"foo") == Node("127.0.0.1", 7002)  # slot 12182
    assert slots.complete
    assert slots.slot_counts()[Node("127.0.0.1", 7000)] == 5461
    assert Node("127.0.0.1", 7003) not in slots.masters()  # replicas take no writes


def test_unserved_slots_have_no_owner() -> None:
    slots = SlotMap.from_cluster_slots([[0, 99, [b"127.0.0.1", 7000, b"x"]]], Node("h", 1))
    assert slots.owner(100) is None
    assert not slots.complete


def test_a_reply_that_is_not_a_list_is_a_topology_error() -> None:
    with pytest.raises(TopologyError):
        SlotMap.from_cluster_slots(b"nope", Node("h", 1))


@pytest.mark.parametrize(
    ("message", "redirect"),
    [
        ("MOVED 3999 127.0.0.1:6381", Redirect("MOVED", 3999, Node("127.0.0.1", 6381))),
        ("ASK 12 10.1.2.3:7000", Redirect("ASK", 12, Node("10.1.2.3", 7000))),
        ("MOVED 1 [::1]:7000", Redirect("MOVED", 1, Node("::1", 7000))),
        ("MOVED x 127.0.0.1:1", None),
        ("ERR MOVED 1 h:1", None),
        ("CLUSTERDOWN The cluster is down", None),
    ],
)
def test_redirects_are_parsed_and_other_errors_are_not(
    message: str, redirect: Redirect | None
) -> None:
    assert parse_redirect(message) == redirect
