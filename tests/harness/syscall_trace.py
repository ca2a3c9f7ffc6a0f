"""Record what a process asks of the file system, in order, with strace.

Durability claims are about the order of syscalls: a record is safe once the fsync of its file
(and of the directory entry that names the file) has returned, and an acknowledgement must come
after both. A traced subprocess prints ``ACK <n>`` with one ``write`` to stdout when it
acknowledges something, so the trace shows each acknowledgement among the syscalls before it.

:func:`durable_view` replays a trace to any point as a crash would leave the disk there: every
write not yet fsync'd is dropped, and so is every create, mkdir or rename whose directory was
not fsync'd. That is the strongest loss the kernel allows, stronger than ``kill -9``. Writes
at an offset (``pwritev``, ``pwrite64``) count up to the highest byte written; space reserved
with ``fallocate`` is zeros past the data, and survives only once fsync'd, as a file's size.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TRACED = (
    "openat,mkdir,rename,renameat2,fsync,fdatasync,write,writev,pwrite64,pwritev,pwritev2,"
    "fallocate,ftruncate,unlink"
)
_AT_OFFSET = ("pwrite64", "pwritev", "pwritev2")
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+)")
_FD = re.compile(r"^(\d+)<(?P<path>[^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ACK = re.compile(r'^1<[^>]*>, "ACK (\d+)\\n"')


def strace_available() -> bool:
    return shutil.which("strace") is not None


@dataclass(frozen=True, slots=True)
class Event:
    call: str  # the syscall, or "ack"
    path: str = ""  # the file or directory it acts on
    target: str = ""  # rename: the new name
    result: int = 0  # bytes written; the new size (ftruncate); the reserved end (fallocate)
    offset: int = -1  # where a write at an offset starts
    created: bool = False  # openat with O_CREAT
    ack: int = -1


def run_traced(argv: list[str], log: Path, *, env: dict[str, str], timeout: float) -> str:
    """Run ``argv`` under strace (threads followed); returns its stdout."""
    command = ["strace", "-f", "-qq", "-y", "-s", "64", "-e", f"trace={TRACED}", "-o", str(log)]
    finished = subprocess.run(
        [*command, *argv], capture_output=True, env=env, timeout=timeout, check=True
    )
    return finished.stdout.decode()


def parse(log: Path) -> list[Event]:
    """The successful calls of a trace, in completion order (an interrupted call counts where
    strace shows it resumed)."""
    events: list[Event] = []
    unfinished: dict[str, str] = {}
    for raw in log.read_text(errors="replace").splitlines():
        line = _join_resumed(raw, unfinished)
        if line is None:
            continue
        match = _LINE.match(line)
        if match is None or int(match["result"]) < 0:
            continue
        event = _event(match["call"], match["args"], int(match["result"]), line)
        if event is not None:
            events.append(event)
    return events


def _join_resumed(raw: str, unfinished: dict[str, str]) -> str | None:
    pid, _, rest = raw.partition(" ")
    if rest.endswith("<unfinished ...>"):
        unfinished[pid] = rest.removesuffix("<unfinished ...>")
        return None
    resumed = re.match(r"\s*<\.\.\. \w+ resumed>(.*)$", rest)
    if resumed is not None:
        return f"{pid} {unfinished.pop(pid, '')}{resumed.group(1)}"
    return raw


def _event(call: str, args: str, result: int, line: str) -> Event | None:
    strings = _STRING.findall(args)
    if call == "write":
        ack = _ACK.match(args)
        if ack is not None:
            return Event("ack", ack=int(ack.group(1)))
    if call in ("write", "writev", "fsync", "fdatasync", "ftruncate", "fallocate", *_AT_OFFSET):
        return _file_event(call, args, result)
    if call == "openat" and strings:
        path = os.path.normpath(strings[0])
        return Event(call, path, created="O_CREAT" in args)
    if call in ("mkdir", "unlink") and strings:
        return Event(call, os.path.normpath(strings[0]))
    if call in ("rename", "renameat2") and len(strings) >= 2:
        return Event("rename", os.path.normpath(strings[0]), os.path.normpath(strings[1]))
    return None


def _file_event(call: str, args: str, result: int) -> Event | None:
    fd = _FD.match(args)
    if fd is None:
        return None
    tail = [part.strip() for part in args.rsplit(",", 3)]
    if call == "ftruncate":
        return Event(call, fd["path"], result=int(tail[-1]))
    if call == "fallocate":  # fd, mode, offset, length
        return Event(call, fd["path"], result=int(tail[-2]) + int(tail[-1]))
    if call == "pwritev2":  # fd, iov, iovcnt, offset, flags
        return Event(call, fd["path"], result=result, offset=int(tail[-2]))
    if call in _AT_OFFSET:
        return Event(call, fd["path"], result=result, offset=int(tail[-1]))
    return Event(call, fd["path"], result=result)


@dataclass(slots=True)
class _File:
    size: int = 0  # the end of the data written
    synced_size: int = 0
    reserved: int = 0  # the file's size with the space fallocate reserved past the data
    synced_reserved: int = 0
    name_durable: bool = False  # its directory entry survives a crash


class DurableDisk:
    """Replays events under ``root``, tracking what a crash would keep at each point."""

    def __init__(self, root: str) -> None:
        self.root = os.path.normpath(root)
        self.files: dict[str, _File] = {}
        self.dirs_durable: dict[str, bool] = {}
        self._pending_dirs: dict[str, set[str]] = {}  # dir -> names awaiting its fsync

    def _mine(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def apply(self, event: Event) -> None:
        if not self._mine(event.path):
            return
        handler = getattr(self, f"_on_{event.call}", None)
        if handler is not None:
            handler(event)

    def _named(self, path: str) -> None:
        self._pending_dirs.setdefault(os.path.dirname(path), set()).add(path)

    def _on_mkdir(self, event: Event) -> None:
        self.dirs_durable[event.path] = False
        self._named(event.path)

    def _on_openat(self, event: Event) -> None:
        if event.created and event.path not in self.files and event.path not in self.dirs_durable:
            self.files[event.path] = _File()
            self._named(event.path)

    def _on_write(self, event: Event) -> None:
        if event.path in self.files:
            self.files[event.path].size += event.result

    _on_writev = _on_write

    def _on_pwrite64(self, event: Event) -> None:
        if event.path in self.files:
            state = self.files[event.path]
            state.size = max(state.size, event.offset + event.result)

    _on_pwritev = _on_pwritev2 = _on_pwrite64

    def _on_fallocate(self, event: Event) -> None:
        if event.path in self.files:
            state = self.files[event.path]
            state.reserved = max(state.reserved, event.result)

    def _on_ftruncate(self, event: Event) -> None:
        if event.path in self.files:
            state = self.files[event.path]
            state.size = min(state.size, event.result)
            state.reserved = event.result

    def _on_fsync(self, event: Event) -> None:
        if event.path in self.files:
            state = self.files[event.path]
            state.synced_size = state.size
            state.synced_reserved = state.reserved
            return
        for name in self._pending_dirs.pop(event.path, set()):
            if name in self.files:
                self.files[name].name_durable = True
            elif name in self.dirs_durable:
                self.dirs_durable[name] = True

    _on_fdatasync = _on_fsync

    def _on_rename(self, event: Event) -> None:
        state = self.files.pop(event.path, None)
        if state is not None:
            # The new name is durable only once the directory is fsync'd; until then a crash
            # may show the old name (we count it as lost, the stricter reading).
            self.files[event.target] = _File(state.size, state.synced_size, False)
            self._named(event.target)

    def _on_unlink(self, event: Event) -> None:
        self.files.pop(event.path, None)

    def unsynced(self) -> list[str]:
        """Files with bytes or names a crash would lose now, and directories likewise."""
        lost = [path for path, state in self.files.items() if state.size != state.synced_size]
        lost += [path for path, state in self.files.items() if not state.name_durable]
        lost += [path for path, durable in self.dirs_durable.items() if not durable]
        return sorted(set(lost))

    def survives(self, path: str) -> bool:
        """Whether ``path`` and every directory above it (up to the root) survive a crash."""
        parent = os.path.dirname(path)
        while self._mine(parent) and parent != self.root:
            if not self.dirs_durable.get(parent, True):
                return False
            parent = os.path.dirname(parent)
        state = self.files.get(path)
        return state is None or state.name_durable


def durable_view(disk: DurableDisk, final: Path, into: Path) -> None:
    """Copy what survives a crash at ``disk``'s point: each surviving file cut to its synced
    size, from ``final`` (the files as the finished run left them, append-only), then zeros up
    to its synced reservation."""
    root = Path(disk.root)
    for path, state in disk.files.items():
        if not disk.survives(path) or not (state.synced_size or state.synced_reserved):
            continue
        source = final / Path(path).relative_to(root)
        target = into / Path(path).relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            data = handle.read(state.synced_size)
        zeros = max(0, state.synced_reserved - len(data))
        target.write_bytes(data + bytes(zeros))
