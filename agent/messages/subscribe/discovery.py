"""Dapr's programmatic subscriptions: a `dapr` subscription without a topic asks the app
(`GET <endpoint>/dapr/subscribe`, as daprd does) which topics it wants, on which routes.

The answer is a list of `{"pubsubname", "topic", "route"}` (or `"routes": {"default": …}`), with
an optional `"bulkSubscribe": {"enabled": true, "maxMessagesCount": n}`. Entries for another
pubsub name, or with a topic name the agent refuses, are skipped with a warning: the rest are
subscribed. Until the app answers, discovery retries with backoff (the app may start after us).
"""

from __future__ import annotations

import dataclasses
import logging
import urllib.parse
from typing import Any

import aiohttp
import orjson

from agent.config.tree import SubscriptionConfig
from agent.messages.topics import is_valid_topic

log = logging.getLogger("agent.messages.subscribe")

DAPR_BULK_DEFAULT = 100  # Dapr's maxMessagesCount when bulk is enabled without one


def subscribe_url(endpoint: str) -> str:
    parts = urllib.parse.urlsplit(endpoint)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/dapr/subscribe", "", ""))


def discovered(template: SubscriptionConfig, answer: Any) -> list[SubscriptionConfig]:
    """One subscription per usable entry of the app's answer, the template's settings kept."""
    if not isinstance(answer, list):
        log.warning("the app's /dapr/subscribe answer is not a list", extra={"answer": answer})
        return []
    found = []
    for entry in answer:
        subscription = _one(template, entry)
        if subscription is None:
            log.warning("skipped a /dapr/subscribe entry", extra={"entry": repr(entry)[:300]})
        else:
            found.append(subscription)
    return found


def _one(template: SubscriptionConfig, entry: Any) -> SubscriptionConfig | None:
    if not isinstance(entry, dict) or entry.get("pubsubname", template.pubsub_name) != (
        template.pubsub_name
    ):
        return None
    topic = entry.get("topic")
    route = entry.get("route")
    routes = entry.get("routes")
    if route is None and isinstance(routes, dict):
        route = routes.get("default")
    if not isinstance(topic, str) or not is_valid_topic(topic) or not isinstance(route, str):
        return None
    base = urllib.parse.urlsplit(template.endpoint)
    endpoint = urllib.parse.urlunsplit((base.scheme, base.netloc, "/" + route.lstrip("/"), "", ""))
    bulk = template.bulk
    options = entry.get("bulkSubscribe")
    if isinstance(options, dict) and options.get("enabled") is True:
        count = options.get("maxMessagesCount", DAPR_BULK_DEFAULT)
        bulk = count if isinstance(count, int) and count > 0 else DAPR_BULK_DEFAULT
    return dataclasses.replace(template, topic=topic, endpoint=endpoint, bulk=bulk)


async def ask_app(template: SubscriptionConfig) -> list[SubscriptionConfig] | None:
    """The app's subscriptions, or None when it did not answer (try again later)."""
    timeout = aiohttp.ClientTimeout(total=template.delivery_timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(subscribe_url(template.endpoint)) as response,
        ):
            if response.status != 200:
                log.warning("the app's /dapr/subscribe answered %d", response.status)
                return None if response.status >= 500 else []
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    try:
        return discovered(template, orjson.loads(body))
    except orjson.JSONDecodeError:
        log.warning("the app's /dapr/subscribe answer is not JSON")
        return []
