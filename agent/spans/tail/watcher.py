"""File-system change notifications (inotify through watchfiles) for the tailer.

Notifications only make the tailer react sooner; the tailer's polling pass is what guarantees
progress. So when watching is impossible (the inotify watch or instance limit is reached, a
directory vanished), the watcher logs once and ends, and polling carries on alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from watchfiles import Change, awatch

from agent.spans.tail.discovery import WatchRoot

log = logging.getLogger("agent.spans.tail.watcher")

# Notifications are grouped for this long: it bounds the wake-ups of a busy file's reader while
# keeping the delay for an idle file that starts growing well under the polling interval.
DEBOUNCE_MS = 50
STEP_MS = 50
# No periodic return from watchfiles' Rust loop (its default, 5 s, re-enters a worker thread and a
# task group each time: about half of an idle watcher's CPU); our stop event ends it instead.
RUST_TIMEOUT_MS = 0

ChangeCallback = Callable[[set[str], bool], None]
"""Called with the changed paths and whether any was created, deleted or moved."""


class ChangeWatcher:
    def __init__(self, roots: list[WatchRoot], on_changes: ChangeCallback) -> None:
        self.roots = roots
        self._on_changes = on_changes
        self._stop = asyncio.Event()
        self.active = False
        self.failure = ""

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Deliver notifications until stopped; returns early (logged) if watching fails."""
        groups = [
            [str(root.path) for root in self.roots if root.recursive is recursive]
            for recursive in (False, True)
        ]
        watches = [
            self._watch(paths, recursive=bool(index)) for index, paths in enumerate(groups) if paths
        ]
        if watches:
            await asyncio.gather(*watches)

    async def _watch(self, paths: list[str], *, recursive: bool) -> None:
        try:
            self.active = True
            async for changes in awatch(
                *paths,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=RUST_TIMEOUT_MS,
                stop_event=self._stop,
                recursive=recursive,
                ignore_permission_denied=True,
            ):
                self._deliver(changes)
        except Exception as error:  # any failure means: fall back to polling
            self.failure = repr(error)
            log.warning(
                "cannot watch span log directories; relying on polling",
                extra={"paths": paths, "error": repr(error)},
            )
        finally:
            self.active = False

    def _deliver(self, changes: set[tuple[Change, str]]) -> None:
        paths = {path for _change, path in changes}
        structural = any(change is not Change.modified for change, _path in changes)
        self._on_changes(paths, structural)
