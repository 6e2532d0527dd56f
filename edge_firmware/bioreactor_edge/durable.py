"""Durable small-file writes: a power cut leaves the old file or the new one, whole.

A rename is durable only once the directory holding it is fsynced, and the renamed file's
bytes only once the file itself is: every helper here does both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Makes the renames and creations in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """Replaces `path` with `text`.

    The temporary file's name is fixed, so a crash leaves at most one stale one, which
    the next write overwrites; callers serialize their own writes of one path.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    _write_synced(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), text)
    tmp.replace(path)
    fsync_directory(path.parent)


def create_exclusively(path: Path, text: str) -> None:
    """Creates the owner-only file `path` holding `text`; FileExistsError if it exists.

    Unlike O_EXCL on `path` itself, a crash cannot leave it empty: the text is written to
    a temporary file of a unique name first and linked in place, so of two processes
    racing to create it exactly one wins and neither sees a partial file.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        _write_synced(fd, text)
        path.hardlink_to(tmp)
    finally:
        tmp.unlink()
    fsync_directory(path.parent)


def _write_synced(fd: int, text: str) -> None:
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
