"""Durable file primitives of the delivery part: the only place that writes bytes.

Every archive and lineage write goes through these few functions, using plain
`os` calls on file descriptors, so the crash-state explorer
(tests/faults/test_crash_states.py) can trace exactly the writes, fsyncs and
renames a delivery step issues. Blocking: call from an executor.
"""

# Plain `os` calls, not pathlib, on purpose: they are what the explorer traces.
# ruff: noqa: PTH103, PTH105, PTH108, PTH116

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def size(path: Path) -> int:
    """The file's size now (0 when it does not exist)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def append(path: Path, data: bytes, *, header: bytes) -> None:
    """Appends `data` (after `header` when the file is new or empty) and fsyncs it;
    a new file's directory entry is fsynced too."""
    created = not path.exists()
    if created:
        os.makedirs(path.parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            data = header + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def truncate(path: Path, length: int) -> None:
    """Cuts `path` back to `length` bytes (removes it at 0) and makes that durable."""
    if not path.exists():
        return
    if length == 0:
        os.unlink(path)
        fsync_dir(path.parent)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        if os.fstat(fd).st_size > length:
            os.ftruncate(fd, length)
            os.fsync(fd)
    finally:
        os.close(fd)


def replace(path: Path, data: bytes) -> None:
    """Replaces `path` atomically: write a temporary file, fsync, rename, fsync the directory."""
    os.makedirs(path.parent, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def complete_length(path: Path) -> int:
    """The length of `path` up to and including its last newline (a torn last line excluded)."""
    length = size(path)
    if length == 0:
        return 0
    with path.open("rb") as file:
        # Lines are short: look back in small blocks for the last newline.
        end = length
        while end > 0:
            start = max(0, end - 4096)
            file.seek(start)
            block = file.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
    return 0
