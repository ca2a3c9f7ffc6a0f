"""The text a JobFirst line's fields are read from, scanned: is the line a span line (one of
the two markers, `jobfirst.MARKERS`), are its attribute keys in the order the Struct read them
(`jobfirst_typed.TypedLines.attributes`), the nanoseconds in an ID (`span_<nanos>`) and the
one-unit durations Go writes (`39.21024ms`).

The C extension of the same name (`jobfirst_scan.c` beside this file), built by
`python -m agent.native.build` with the compiled modules, loads in place of this module (see
`agent.native`): the same answers, without the generic method call, argument tuple and
parsing that each `bytes.find` from compiled code goes through, and without the slices and
the general `int()` of the digits (docs/benchmarks.md). This module is what runs without that
build. tests/unit/spans/decode/test_direct_jobfirst.py holds both to the marker regex, to
`bytes.find`, to `int()` and to the general duration parse.
"""

from __future__ import annotations

from typing import Final

# jobfirst.MESSAGE_MARKER and MSG_MARKER (the C twin spells them too; the tests hold both to
# the regex the general path searches with).
_MESSAGE_MARKER: Final = b'"message":"Span '
_MSG_MARKER: Final = b'"msg":"Span '


def has_marker(line: bytes) -> bool:
    """Whether the line holds JobFirst's `"message":"Span ` or logrus' default `"msg":"Span `:
    `MARKER.search(line) is not None`. `find`, not `in`: CPython's `bytes.__contains__` first
    tries its argument as an integer, and formats the TypeError it then drops, on every
    call."""
    return line.find(_MESSAGE_MARKER) >= 0 or line.find(_MSG_MARKER) >= 0


def first_places_increase(line: bytes, needles: list[bytes]) -> bool:
    """Whether each needle's first place in the line comes after the one before's (each is
    found, in this order)."""
    last = -1
    for needle in needles:
        at = line.find(needle)
        if at <= last:
            return False
        last = at
    return True


def prefixed_digits(text: str, prefix: str) -> int | None:
    """The number after `prefix` when the rest of the text is 1 to 19 ASCII digits, else None."""
    if not text.startswith(prefix):
        return None
    digits = text[len(prefix) :]
    if digits.isdigit() and digits.isascii() and len(digits) <= 19:
        return int(digits)
    return None


_SECOND_NS: Final = 1_000_000_000
# The letter before a final `s` that makes it a unit under a second: `ns`, `us`, `µs` (micro
# sign), `μs` (Greek mu), `ms`.
_UNDER_A_SECOND: Final = {"n": 1, "u": 1_000, "µ": 1_000, "μ": 1_000, "m": 1_000_000}
_MINUTES_HOURS: Final = {"m": 60_000_000_000, "h": 3_600_000_000_000}
_MAX_DIGITS: Final = 18  # a number read in one `int`: more digits take the general parse
_POWERS_OF_TEN: Final[list[int]] = [10**places for places in range(_MAX_DIGITS + 1)]


def one_unit_duration(text: str) -> int | None:
    """A Go duration of one unit (`39.21024ms`, `523.417µs`, `1.5s`, `0s`, `2m`) in
    nanoseconds: ASCII digits, at most one `.` with digits on both sides, at most 18 digits,
    then one unit; None for any other text (the general parse's)."""
    unit = text[-1:]
    if unit == "s":
        scale = _UNDER_A_SECOND.get(text[-2:-1])
        if scale is None:
            scale, digits = _SECOND_NS, text[:-1]
        else:
            digits = text[:-2]
    else:
        scale = _MINUTES_HOURS.get(unit)
        if scale is None:
            return None
        digits = text[:-1]
    point = digits.find(".")
    if point < 0:
        number, places = digits, 0
    else:  # the digits on both sides as one number, scaled down by the places after the dot
        number, places = digits[:point] + digits[point + 1 :], len(digits) - point - 1
        if point == 0 or places == 0:
            return None
    if not (0 < len(number) <= _MAX_DIGITS and number.isdigit() and number.isascii()):
        return None
    return int(number) * scale // _POWERS_OF_TEN[places]
