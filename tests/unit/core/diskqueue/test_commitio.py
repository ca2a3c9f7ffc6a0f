"""A commit's write, data sync and wake-up (agent/core/diskqueue/commitio): the C extension of
the native build and its pure twin must do the same three steps in order, and on any failure
raise OSError without the wake-up, so that nothing is reported durable that is not.

Each test runs against the pure module and, when the native build is loaded, against the C
extension too.
"""

from __future__ import annotations

import errno
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent import native
from agent.core.diskqueue import commitio

REPO = Path(__file__).resolve().parents[4]
PURE_SOURCE = REPO / "agent" / "core" / "diskqueue" / "commitio.py"


def pure_twin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("commitio_pure", PURE_SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def implementations() -> list[pytest.param]:  # type: ignore[valid-type]
    compiled = native.compiled(commitio)
    return [
        pytest.param(pure_twin(), id="pure"),
        pytest.param(
            commitio,
            id="native",
            marks=pytest.mark.skipif(
                not compiled,
                reason=f"the native build is not loaded ({native.STATUS.describe()})",
            ),
        ),
    ]


@pytest.fixture(params=implementations())
def module(request: pytest.FixtureRequest) -> ModuleType:
    chosen: ModuleType = request.param
    return chosen


@pytest.fixture
def notify_fd() -> Iterator[int]:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    yield fd
    os.close(fd)


def notified(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def test_the_native_build_holds_the_c_extension() -> None:
    assert commitio.AVAILABLE is native.compiled(commitio)
    assert pure_twin().AVAILABLE is False


def test_parts_are_written_in_order_at_the_offset_then_synced_and_counted(
    module: ModuleType, notify_fd: int, tmp_path: Path
) -> None:
    path = tmp_path / "segment"
    path.write_bytes(b"head" + b"\0" * 20)
    fd = os.open(path, os.O_WRONLY)
    try:
        module.commit(fd, [b"ab", b"", b"cde"], 4, True, notify_fd)
        module.commit(fd, [b"f"], 9, False, notify_fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"headabcdef" + b"\0" * 14
    assert notified(notify_fd) == 2


def test_more_parts_than_one_call_takes_are_all_written(
    module: ModuleType, notify_fd: int, tmp_path: Path
) -> None:
    parts = [b"%05d" % n for n in range(3000)]  # past IOV_MAX (1024)
    path = tmp_path / "segment"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        module.commit(fd, parts, 0, True, notify_fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)
    assert notified(notify_fd) == 1


def test_nothing_to_write_still_syncs_and_counts(
    module: ModuleType, notify_fd: int, tmp_path: Path
) -> None:
    fd = os.open(tmp_path / "segment", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        module.commit(fd, [], 0, True, notify_fd)
    finally:
        os.close(fd)
    assert notified(notify_fd) == 1


def test_a_failed_write_raises_and_counts_nothing(module: ModuleType, notify_fd: int) -> None:
    read_end, write_end = os.pipe()  # a pipe has no offsets: pwritev fails with ESPIPE
    try:
        with pytest.raises(OSError) as failed:
            module.commit(write_end, [b"x"], 0, True, notify_fd)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert failed.value.errno == errno.ESPIPE
    assert notified(notify_fd) == 0


def test_a_failed_sync_raises_and_counts_nothing(module: ModuleType, notify_fd: int) -> None:
    read_end, write_end = os.pipe()  # fdatasync of a pipe fails with EINVAL
    try:
        with pytest.raises(OSError) as failed:
            module.commit(write_end, [], 0, True, notify_fd)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert failed.value.errno == errno.EINVAL
    assert notified(notify_fd) == 0


def test_a_closed_descriptor_raises(module: ModuleType, notify_fd: int, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "segment", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as failed:
        module.commit(fd, [b"x"], 0, True, notify_fd)
    assert failed.value.errno == errno.EBADF
    assert notified(notify_fd) == 0


def test_a_wake_up_that_cannot_be_sent_raises(module: ModuleType, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    fd = os.open(tmp_path / "segment", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as failed:
            module.commit(fd, [b"x"], 0, True, read_end)  # a pipe's read end refuses writes
    finally:
        for each in (fd, read_end, write_end):
            os.close(each)
    assert failed.value.errno == errno.EBADF
