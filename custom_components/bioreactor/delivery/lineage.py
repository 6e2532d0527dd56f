"""The delivery lineage of one agent: how far each of its journal epochs is archived.

Fault model: epochs that come back (A -> B -> A: a restored SD card), pages served
again, and a lost or unreadable lineage file. The file keeps the high-water seq of
every epoch ever seen, so a reading is archived only above its epoch's mark; when
the file is gone the marks are read back from the archive itself. An epoch an
agent's recovery started inherits its ancestors' marks up to their `through_seq`. `pending` holds
the archive files' sizes before an append (an append still in doubt); `hours`
holds the hours with late readings whose statistics are not imported yet.

One small JSON file replaced atomically — Home Assistant's Store saves lazily,
which is not durable enough for an acknowledgement to depend on. Blocking: call
from an executor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..api import Ancestor
from . import archive, files

_LOGGER = logging.getLogger(__name__)
VERSION = 2


class LineageError(Exception):
    """The lineage file belongs to another agent."""


@dataclass(frozen=True, slots=True)
class Lineage:
    agent_id: str
    epochs: dict[str, int] = field(default_factory=dict)
    current: str | None = None
    pending: dict[str, int] = field(default_factory=dict)
    hours: frozenset[str] = frozenset()

    def high_water(self, epoch: str, ancestors: Sequence[Ancestor] = ()) -> int:
        """How far `epoch` is archived: its own mark, or what it inherited from ancestors
        already archived (an agent's recovery continues their numbers in a new epoch)."""
        inherited = (min(self.epochs.get(a.epoch, 0), a.through_seq) for a in ancestors)
        return max(self.epochs.get(epoch, 0), max(inherited, default=0))

    def advanced(self, epoch: str, seq: int, hours: frozenset[str]) -> Lineage:
        """The lineage once readings of `epoch` up to `seq` are archived."""
        epochs = {**self.epochs, epoch: max(seq, self.high_water(epoch))}
        return Lineage(self.agent_id, epochs, epoch, {}, self.hours | hours)

    def settled(self) -> Lineage:
        return replace(self, pending={})


def _parse(data: Any, agent_id: str) -> Lineage:
    if not isinstance(data, dict):
        raise TypeError("not an object")
    if "version" not in data:
        # Version 1: one (epoch, seq) cursor and `pending`.
        epoch = data.get("epoch")
        epochs = {str(epoch): int(data.get("seq", 0))} if epoch else {}
        return Lineage(agent_id, epochs, epoch, dict(data.get("pending") or {}))
    if data.get("agent_id") != agent_id:
        raise LineageError(
            f"the lineage file belongs to agent {data.get('agent_id')!r}, not {agent_id!r}"
        )
    return Lineage(
        agent_id,
        {str(k): int(v) for k, v in data["epochs"].items()},
        data.get("current"),
        {str(k): int(v) for k, v in data["pending"].items()},
        frozenset(str(h) for h in data["hours"]),
    )


def load(path: Path, agent_id: str, agent_dir: Path) -> Lineage:
    """The saved lineage; when the file is missing or unreadable, the marks the archive holds."""
    try:
        return _parse(json.loads(path.read_bytes()), agent_id)
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        _LOGGER.warning(
            "lineage file %s is unreadable (%s); rebuilding it from the archive", path, err
        )
    marks = archive.high_water_marks(agent_dir)
    if marks:
        _LOGGER.warning(
            "no delivery lineage for agent %s: recovered %d epochs from the archive",
            agent_id,
            len(marks),
        )
    return Lineage(agent_id, marks)


def save(path: Path, lineage: Lineage) -> None:
    data = {
        "version": VERSION,
        "agent_id": lineage.agent_id,
        "current": lineage.current,
        "epochs": lineage.epochs,
        "pending": lineage.pending,
        "hours": sorted(lineage.hours),
    }
    files.replace(path, json.dumps(data, separators=(",", ":")).encode())
