"""The garbage collector's thresholds for a long-running agent.

CPython starts a young-generation collection every 700 net container allocations. Decoding a
batched msgpack publish makes several Python objects per message (a dict, its list, the
envelope), all alive until the request is answered: with the default threshold they survive
a handful of young collections per request, are promoted, and the promotions trigger full
collections that walk the agent's whole heap. A larger first threshold lets one request's
objects die young; reference counting still frees nearly everything at once, so the collector
only has cycles to find, and a few tens of thousands of objects of them are a few MiB at most.
docs/benchmarks.md has the measured difference (batched msgpack CPU a message).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Net container allocations between young collections (CPython's default is 700)."""


def tune_garbage_collector() -> None:
    """Raise the young generation's threshold; the older generations keep their defaults."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
