"""`make_key` hands out one key object per resource of string values, and never mixes up
resources whose values are equal in Python but not in OTLP (1, 1.0, True, "1")."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agent.spans.encode.resources import Resources, _freeze, make_key
from agent.spans.encode.wire import any_value


def built(service: str | None, resource: dict[str, Any], name: str, version: str) -> Any:
    """The key as built without the cache."""
    frozen = tuple(sorted((k, _freeze(v)) for k, v in resource.items())) if resource else ()
    return (service, frozen, name, version)


def test_a_resource_of_strings_gets_one_key_object() -> None:
    first = make_key("svc", {"team": "core", "region": "eu"}, "scope", "1")
    again = make_key("svc", {"team": "core", "region": "eu"}, "scope", "1")
    assert first is again
    assert make_key("svc", {}, "scope", "1") is make_key("svc", {}, "scope", "1")
    assert first == built("svc", {"region": "eu", "team": "core"}, "scope", "1")


values = st.one_of(
    st.sampled_from([1, 1.0, True, "1", 0, 0.0, False, "0", "", None, -0.0, float("nan")]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@given(st.lists(st.dictionaries(st.sampled_from("abc"), values, max_size=3), max_size=6))
def test_keys_equal_the_uncached_keys_whatever_came_before(resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        assert make_key("svc", resource, "", "") == built("svc", resource, "", "")


def test_resources_holding_a_nan_give_equal_keys() -> None:
    """NaN equals nothing, yet two resources holding one (as different objects) are equal."""
    first = make_key("svc", {"a": float("nan"), "b": [float("nan")]}, "", "")
    again = make_key("svc", {"a": float("nan"), "b": [float("nan")]}, "", "")
    assert first == again and hash(first) == hash(again)


def test_resources_whose_floats_otlp_writes_differently_give_different_keys() -> None:
    assert make_key("svc", {"a": 0.0}, "", "") != make_key("svc", {"a": -0.0}, "", "")
    assert make_key("svc", {"a": float("nan")}, "", "") != make_key(
        "svc", {"a": -float("nan")}, "", ""
    )


@given(st.dictionaries(st.sampled_from("ab"), values, max_size=2))
def test_a_resource_comes_back_as_otlp_writes_it(resource: dict[str, Any]) -> None:
    merged = Resources().attributes_for(make_key(None, resource, "", ""))
    assert {k: any_value(merged[k]) for k in resource} == {
        k: any_value(v) for k, v in resource.items()
    }
