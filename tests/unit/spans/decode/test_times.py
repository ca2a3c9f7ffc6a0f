"""RFC 3339 times: the looked-up parse (`utc_rfc3339`, minute and second caches) answers what
the exact parse answers, or None (the caller then takes the exact parse), also when the
caches already hold the time's minute and second."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from agent.spans.decode.common import _parse_rfc3339_text, parse_rfc3339, utc_rfc3339
from agent.spans.validate import BadRecord

_FRACTIONS = ["", ".", ".1", ".000050", ".039210241", ".0392102411", ".12a", ".١٢", ". 1"]
_FRACTIONS += [".1:", ".5/1"]  # the characters either side of the digits
_ZONES = ["Z", "z", "+08:00", "-05:30", "+0800", "", "+24:00"]
_CLOCKS = ["07:04:05", "23:59:59", "23:59:60", "24:00:00", "07:4:05", "07:04:5 "]


@st.composite
def times(draw: st.DrawFn) -> str:
    date = draw(st.sampled_from(["2024-11-28", "2024-02-30", "1970-01-01", "2024-13-01"]))
    sep = draw(st.sampled_from(["T", " ", "t"]))
    clock = draw(st.sampled_from(_CLOCKS))
    return date + sep + clock + draw(st.sampled_from(_FRACTIONS)) + draw(st.sampled_from(_ZONES))


def _exact(text: str) -> int | None:
    try:
        return _parse_rfc3339_text(text, "t")
    except BadRecord:
        return None


@settings(max_examples=600)
@given(st.lists(times(), min_size=1, max_size=6))
def test_the_looked_up_parse_is_the_exact_one(texts: list[str]) -> None:
    for text in texts + texts:  # twice: the second read finds its minute and second cached
        fast = utc_rfc3339(text)
        event(f"looked up: {fast is not None}")
        if fast is not None:
            assert fast == _exact(text)


def test_a_cached_second_gives_each_fraction_its_own_time() -> None:
    first = parse_rfc3339("2024-11-28T07:04:05.000050Z", "t")
    assert utc_rfc3339("2024-11-28T07:04:05.039210241Z") == first - 50_000 + 39_210_241
    assert utc_rfc3339("2024-11-28T07:04:05.5Z") == first - 50_000 + 500_000_000
    assert utc_rfc3339("2024-11-28T07:04:05.1234567891Z") is None  # ten digits: exact parse
    assert utc_rfc3339("2024-11-28T07:04:05.12a4Z") is None


_SECONDS_POOL = [
    "2024-11-28T07:04:05",
    "2024-11-28T07:04:06",
    "2024-11-28T07:05:05",
    "2024-11-29T07:04:05",
    "1970-01-01T00:00:00",
    "2024-02-29T23:59:59",
    "2023-02-29T23:59:59",
]
_TAILS = [
    ".000050000Z",
    ".039210241Z",
    ".5Z",
    ".123456Z",
    ".1234567891Z",
    ".12a4Z",
    ".12:4Z",  # the characters either side of the digits: a digit-by-digit read's bounds
    ".5/1Z",
    ".١٢Z",
    "Z",
    ".Z",
]


@settings(max_examples=400)
@given(
    st.lists(
        st.tuples(st.sampled_from(_SECONDS_POOL), st.sampled_from(_TAILS)), min_size=1, max_size=12
    )
)
def test_times_that_share_their_second_read_as_the_exact_parse(
    parts: list[tuple[str, str]],
) -> None:
    """Span times come in runs of one second (a span's start, events and end): each read
    finds it as the last one's, in the cache of seconds, or not at all, and gets the exact
    time in every case, also for a text that shares the last second but is not a time."""
    for second, tail in parts:
        text = second + tail
        fast = utc_rfc3339(text)
        event(f"looked up: {fast is not None}")
        if fast is not None:
            assert fast == _exact(text)


_FRACTION_CHARS = st.sampled_from("0123456789") | st.sampled_from("/:_ +-.a١²٣\u00b9Z")


@settings(max_examples=600)
@given(
    st.sampled_from(_SECONDS_POOL),
    st.lists(st.text(_FRACTION_CHARS, min_size=0, max_size=11), min_size=1, max_size=4),
)
def test_fractions_read_digit_by_digit_are_exact(second: str, fractions: list[str]) -> None:
    """Every fraction length Go writes (it trims trailing zeros) and the characters next to the
    digits (`/`, `:`), other digits (Arabic-Indic, superscripts), signs, spaces and
    underscores, which `int` would read: the exact parse's time, or None."""
    for fraction in fractions:
        text = f"{second}.{fraction}Z"
        for _ in range(2):  # the second read finds the second as the last one's
            fast = utc_rfc3339(text)
            event(f"looked up: {fast is not None}")
            if fast is not None:
                assert fast == _exact(text)
            elif fraction.isascii() and fraction.isdigit() and 0 < len(fraction) <= 9:
                assert _exact(text) is None  # a good time is never left to the exact parse
