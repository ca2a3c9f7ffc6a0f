"""Reading the app's GET /dapr/subscribe answer into subscriptions."""

from __future__ import annotations

from agent.config.tree import SubscriptionConfig
from agent.messages.subscribe.discovery import discovered, subscribe_url

TEMPLATE = SubscriptionConfig(
    endpoint="http://127.0.0.1:3000/ignored", protocol="dapr", pubsub_name="pubsub", max_retries=7
)


def test_routes_bulk_and_skipped_entries() -> None:
    answer = [
        {"pubsubname": "pubsub", "topic": "orders", "route": "/orders"},
        {
            "pubsubname": "pubsub",
            "topic": "audit",
            "routes": {"default": "events/audit"},
            "bulkSubscribe": {"enabled": True, "maxMessagesCount": 50},
        },
        {"pubsubname": "other", "topic": "elsewhere", "route": "/x"},
        {"pubsubname": "pubsub", "topic": "bad topic", "route": "/x"},
        {"pubsubname": "pubsub", "topic": "noroute"},
        "garbage",
    ]
    subs = discovered(TEMPLATE, answer)
    assert [(s.topic, s.endpoint, s.bulk) for s in subs] == [
        ("orders", "http://127.0.0.1:3000/orders", 0),
        ("audit", "http://127.0.0.1:3000/events/audit", 50),
    ]
    assert all(s.max_retries == 7 and s.protocol == "dapr" for s in subs)


def test_not_a_list_gives_nothing_and_the_url() -> None:
    assert discovered(TEMPLATE, {"topic": "x"}) == []
    assert subscribe_url("http://app:3000/a/b?c=d") == "http://app:3000/dapr/subscribe"
