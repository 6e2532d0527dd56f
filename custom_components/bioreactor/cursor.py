"""The delivery cursor: how far one agent's readings are durably archived.

A small JSON file replaced atomically (write, fsync, rename, fsync the
directory) — Home Assistant's Store saves lazily, which is not durable enough
for an acknowledgement to depend on. `pending` records the archive files' sizes
before an append; a cursor that still has it after a crash means that append
may be partial and is undone. Blocking: call from an executor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str | None = None
    seq: int = 0
    pending: dict[str, int] = field(default_factory=dict)


def load(path: Path) -> Cursor:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Cursor()
    pending = data.get("pending") or {}
    return Cursor(epoch=data.get("epoch"), seq=int(data.get("seq", 0)), pending=dict(pending))


def save(path: Path, cursor: Cursor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        json.dump({"epoch": cursor.epoch, "seq": cursor.seq, "pending": cursor.pending}, file)
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Makes a rename or a new file in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
