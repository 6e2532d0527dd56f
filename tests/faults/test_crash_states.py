"""The crash-state explorer: trace the archive and lineage writes, fsyncs and renames
of a run of delivery steps (two reactors, a day boundary, epochs A -> B -> A), then
recover from every state a crash could leave on a POSIX file system after every
traced operation. No state may lose a reading, archive one twice, or have had a
reading acknowledged (and so deleted by the agent) before it was durable."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive_files import archive_rows
from tests.support.fault_report import record, scale
from tests.support.light_pipeline import install
from tests.support.os_faults import TracingOs

from .crash_states import Model, crash_states, materialize

install()
from custom_components.bioreactor.api import Reading, ReadingsPage  # noqa: E402
from custom_components.bioreactor.delivery import files  # noqa: E402
from custom_components.bioreactor.delivery.pipeline import Delivery  # noqa: E402

AGENT = "ef785eb90d638e3d"
START = datetime(2026, 11, 24, 23, 59, 58, tzinfo=UTC)


def journal(epoch: str, count: int, offset: timedelta) -> list[Reading]:
    out = []
    for seq in range(1, count + 1):
        at = START + offset + timedelta(seconds=seq)
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        reactor = "bus1" if seq % 3 else "bus2"
        out.append(Reading(seq, stamp, reactor, f"{reactor}-ph-63", "ph",
                           round(7 + seq / 100, 3), "pH", epoch))  # fmt: skip
    return out


# The agent's life: epoch A (6 readings), then a different journal B, then A again
# with 3 more readings. Each stage is drained in pages of 3.
STAGES = (("A", 6), ("B", 4), ("A", 9))
JOURNALS = {"A": journal("A", 9, timedelta()), "B": journal("B", 4, timedelta(hours=1))}


class Agent:
    """Serves one epoch's journal; deletes acknowledged readings (the strictest
    retention); notes acknowledgements in the trace."""

    def __init__(self, trace: list[tuple[Any, ...]] | None, acked: dict[str, int]) -> None:
        self.trace = trace
        self.acked = acked
        self.epoch = "A"
        self.newest = 0

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        kept = [
            r
            for r in JOURNALS[self.epoch][: self.newest]
            if r.seq > max(after, self.acked.get(self.epoch, 0))
        ]
        page = tuple(kept[:limit])
        return ReadingsPage(AGENT, self.epoch, self.newest, len(kept) > len(page), page)

    async def ack(self, epoch: str, seq: int) -> int:
        self.acked[epoch] = max(seq, self.acked.get(epoch, 0))
        if self.trace is not None:
            self.trace.append(("ack", epoch, seq))
        return seq


async def run_now(job: Any, *args: Any) -> Any:
    return job(*args)


async def live_through(agent: Agent, root: Path) -> None:
    delivery = Delivery(agent, AGENT, root / "archive", root / "cursor.json", run_now, page_size=3)
    await delivery.recover()
    for epoch, newest in STAGES:
        agent.epoch, agent.newest = epoch, newest
        for _ in range(10):
            if not (await delivery.pull()).more:
                break


async def test_every_crash_state_recovers_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced_root = tmp_path / "traced"
    traced_root.mkdir()
    tracer = TracingOs()
    monkeypatch.setattr(files, "os", tracer)
    await live_through(Agent(tracer.ops, {}), traced_root)
    monkeypatch.undo()
    file_ops = [op for op in tracer.ops if op[0] != "ack"]
    assert {op[0] for op in file_ops} >= {"create", "write", "fsync", "rename"}

    rng = random.Random(23)
    expected = {(e, r.seq) for e, rs in JOURNALS.items() for r in rs}
    checked = lost = duplicated = delivered = 0
    limit = max(40, round(120 * scale()))
    model = Model()
    acked: dict[str, int] = {}
    for position in range(len(tracer.ops) + 1):
        if position:
            op = tracer.ops[position - 1]
            if op[0] == "ack":
                acked[op[1]] = max(op[2], acked.get(op[1], 0))
                continue
            model.apply(op)
        for state in crash_states(model, rng, limit=limit):
            root = tmp_path / f"state{checked % 8}"
            if root.exists():
                for path in sorted(root.rglob("*"), reverse=True):
                    path.unlink() if path.is_file() else path.rmdir()
            root.mkdir(exist_ok=True)
            materialize(state, traced_root, root)
            # The agent after the crash: acknowledged readings are gone for good.
            await live_through(Agent(None, dict(acked)), root)
            # A damaged row (torn inside the file) counts as its reading lost.
            rows = [
                r
                for r in archive_rows(root / "archive")
                if None not in r.values() and str(r["seq"]).isdigit()
            ]
            got = Counter((r["epoch"], int(r["seq"])) for r in rows)
            values = {(r["epoch"], int(r["seq"])): float(r["value"]) for r in rows}
            delivered += len(rows)
            duplicated += sum(n - 1 for n in got.values())
            lost += sum(1 for identity in expected if identity not in got)
            lost += sum(
                1
                for e, rs in JOURNALS.items()
                for r in rs
                if (e, r.seq) in values and values[e, r.seq] != r.value
            )
            checked += 1
    record(
        "crash-state explorer (HA archive + lineage, A->B->A)",
        cycles=checked,
        generated=checked * len(expected),
        delivered=delivered,
        lost=lost,
        duplicated=duplicated,
    )
    assert checked >= 200
    assert lost == 0
    assert duplicated == 0
