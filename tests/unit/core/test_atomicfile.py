"""Crash-safe file replacement and versioned state files."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.atomicfile import (
    StateFileError,
    fsync_dir,
    load_state,
    save_state,
    write_all_at,
    write_atomic,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def test_write_atomic_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_failed_write_keeps_old_content_and_removes_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    write_atomic(target, b"old")
    not_bytes: Any = object()
    with pytest.raises(TypeError):
        write_atomic(target, not_bytes)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_fsync_dir_needs_an_existing_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def test_missing_state_file_loads_as_none(tmp_path: Path) -> None:
    assert load_state(tmp_path / "absent.json", 1) is None


@settings(max_examples=40, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_state_round_trips(
    tmp_path_factory: pytest.TempPathFactory, payload: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("state") / "s.json"
    save_state(path, 3, payload)
    assert load_state(path, 3) == payload


def test_other_version_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    save_state(path, 2, {"offset": 10})
    with pytest.raises(StateFileError, match=r"version 2.*reads version 1"):
        load_state(path, 1)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: b"",
        lambda raw: b"\xff\xfe not json",
        lambda raw: b"[1, 2]",
        lambda raw: raw.replace(b'"offset": 10', b'"offset": 11'),
        lambda raw: json.dumps({"version": 1, "payload": {}}).encode(),
    ],
    ids=["truncated", "empty", "binary", "not-an-object", "payload-edited", "no-checksum"],
)
def test_damaged_state_file_loads_as_none_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any
) -> None:
    path = tmp_path / "s.json"
    save_state(path, 1, {"offset": 10})
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.ERROR, logger="agent.core.atomicfile"):
        assert load_state(path, 1) is None
    assert "damaged" in caplog.text


def test_a_write_that_makes_no_progress_fails_instead_of_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write is retried; one that writes nothing at all (the file system stuck at a
    limit it does not report) is an EIO, not an endless loop."""
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        monkeypatch.setattr(os, "pwritev", lambda fd, parts, offset: 1)
        monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
        with pytest.raises(OSError) as caught:
            write_all_at(fd, [b"abc", b"def"], 0)
        assert caught.value.errno == errno.EIO
    finally:
        os.close(fd)
