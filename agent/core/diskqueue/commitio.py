"""One commit's I/O: write its bytes, sync them if asked, then tell the event loop.

The work is done by the C extension of the same name (`commitio.c` beside this file), which
`python -m agent.native.build` compiles with the other native modules and which then loads in
place of this module (see `agent.native`): it does the three steps with the GIL released once,
so the event loop, woken through the eventfd `notify_fd`, learns that a commit is durable
without waiting for the writer thread to take the GIL back (which it must after every blocking
call, and which the busy event loop holds).

This pure module is what runs without that build: the same three steps, the same result, with
a GIL hand-over after each.
"""

from __future__ import annotations

import os
import sys

from agent.core.atomicfile import write_all_at

AVAILABLE = False  # the C extension says True
_ONE = (1).to_bytes(8, sys.byteorder)  # appender.DONE: what an eventfd adds to its count
_sync_data = getattr(os, "fdatasync", os.fsync)


def commit(fd: int, parts: list[bytes], offset: int, sync: bool, notify_fd: int) -> None:
    """Write `parts` in order at `offset` of `fd`, `fdatasync` it if `sync`, then write 1 as an
    8-byte native integer to `notify_fd` (an eventfd, or a pipe). Any failure raises OSError
    before that: nothing is reported done that was not written (and synced, if asked)."""
    write_all_at(fd, parts, offset)
    if sync:
        _sync_data(fd)
    os.write(notify_fd, _ONE)
