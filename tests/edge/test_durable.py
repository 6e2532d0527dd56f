"""Durable small-file writes: whole files, owner-only where asked, no temporary left over."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bioreactor_edge.durable import create_exclusively, write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old", encoding="utf-8")
    write_atomically(path, "new")
    assert path.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_create_exclusively_refuses_an_existing_file_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    create_exclusively(path, "first\n")
    assert _mode(path) == 0o600
    with pytest.raises(FileExistsError):
        create_exclusively(path, "second\n")
    assert path.read_text(encoding="utf-8") == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["token"]
