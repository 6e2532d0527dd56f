"""The delivery pipeline on real files: identity, rollback, torn tails, epoch lineage,
a lost lineage file, pages from the wrong agent, and one delivery per agent at a time."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from custom_components.bioreactor.api import (
    Ancestor,
    BioreactorRequestError,
    BioreactorWrongAgentError,
    Reading,
    ReadingsPage,
)
from custom_components.bioreactor.delivery import archive, files, lineage
from custom_components.bioreactor.delivery.pipeline import Delivery, StorageError
from tests.support.archive_files import archive_rows
from tests.support.light_pipeline import run_blocking
from tests.support.os_faults import FaultyOs

from .conftest import AGENT_ID

START = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)


def reading(seq: int, at: datetime, *, sensor: str = "bus1-ph-63", value: float = 7.0) -> Reading:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Reading(seq, stamp, "bus1", sensor, "ph", value, "pH", "good")


def series(count: int, *, first: int = 1, at: datetime = START) -> list[Reading]:
    return [reading(n, at + timedelta(seconds=n)) for n in range(first, first + count)]


class FakeAgent:
    """A journal behind the ReadingsSource protocol: pages, epochs, acks."""

    def __init__(self, readings: list[Reading], epoch: str = "e1") -> None:
        self.journal = readings
        self.epoch = epoch
        self.agent_id = AGENT_ID
        self.acked: list[tuple[str, int]] = []
        self.refuse_ack = False
        self.asked: list[int] = []
        self.lineage: tuple[Ancestor, ...] = ()

    async def readings_page(self, after: int, limit: int) -> ReadingsPage:
        self.asked.append(after)
        page = [r for r in self.journal if r.seq > after][:limit]
        newest = self.journal[-1].seq if self.journal else 0
        more = bool(page) and page[-1].seq < newest
        return ReadingsPage(self.agent_id, self.epoch, newest, more, tuple(page), self.lineage)

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        return await self.readings_page(after, limit)

    async def ack(self, epoch: str, seq: int) -> int:
        if self.refuse_ack:
            raise BioreactorRequestError(409, "epoch_mismatch", "no")
        self.acked.append((epoch, seq))
        return seq


def pipeline(agent: FakeAgent, tmp_path: Path, **kwargs: Any) -> Delivery:
    return Delivery(
        agent, AGENT_ID, tmp_path / "a", tmp_path / "lineage.json", run_blocking, **kwargs
    )


def identities(tmp_path: Path) -> list[tuple[str, int]]:
    return [(r["epoch"], int(r["seq"])) for r in archive_rows(tmp_path / "a")]


async def test_pages_are_archived_once_then_acknowledged(tmp_path: Path) -> None:
    agent = FakeAgent([reading(n, START + timedelta(minutes=n)) for n in range(1, 251)])
    delivery = pipeline(agent, tmp_path, page_size=100)
    await delivery.recover()
    results = [await delivery.pull() for _ in range(4)]
    assert [len(r.readings) for r in results] == [100, 100, 50, 0]
    assert [r.more for r in results] == [True, True, False, False]
    assert agent.acked == [("e1", 100), ("e1", 200), ("e1", 250)]
    rows = archive_rows(tmp_path / "a")
    assert [int(r["seq"]) for r in rows] == list(range(1, 251))
    assert {(r["agent"], r["epoch"]) for r in rows} == {(AGENT_ID, "e1")}
    # Readings cross midnight: one file per UTC day.
    assert sorted(p.name for p in (tmp_path / "a" / "bus1").iterdir()) == [
        "2026-11-24.csv",
        "2026-11-25.csv",
    ]
    assert delivery.remaining == 0
    assert delivery.delivered_total == 250


async def test_a_page_served_again_is_not_archived_again(tmp_path: Path) -> None:
    agent = FakeAgent(series(30))
    first = pipeline(agent, tmp_path)
    await first.recover()
    await first.pull()
    # A second pipeline that never recovered (stale memory: nothing archived) pulls
    # from seq 0 again: the durable lineage still refuses every identity.
    second = pipeline(agent, tmp_path)
    delivered = await second.pull()
    assert delivered.readings == ()
    assert identities(tmp_path) == [("e1", n) for n in range(1, 31)]
    assert agent.acked == [("e1", 30)] * 2


async def test_interrupted_append_is_rolled_back_on_recovery(tmp_path: Path) -> None:
    agent = FakeAgent(series(20))
    delivery = pipeline(agent, tmp_path, page_size=10)
    await delivery.recover()
    await delivery.pull()
    # A crash after the append but before the lineage moved: the page is on disk, the
    # lineage records the files' earlier sizes as pending.
    plan = archive.plan_append(tmp_path / "a", AGENT_ID, "e1", agent.journal[10:20])
    sizes = archive.repair_tails(tmp_path / "a", plan.keys())
    durable = lineage.load(tmp_path / "lineage.json", AGENT_ID, tmp_path / "a")
    lineage.save(tmp_path / "lineage.json", lineage.Lineage(AGENT_ID, durable.epochs, "e1", sizes))
    archive.append(plan)

    restarted = pipeline(agent, tmp_path, page_size=10)
    await restarted.recover()
    assert restarted.position.seq == 10
    assert len(archive_rows(tmp_path / "a")) == 10
    await restarted.pull()
    assert identities(tmp_path) == [("e1", n) for n in range(1, 21)]


@pytest.mark.parametrize("fail_at", range(1, 11))
async def test_failed_write_rolls_back_before_the_next_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """ENOSPC/EIO at any write, fsync or rename of a storage step: nothing is
    acknowledged, and the next attempt starts from the last durable state."""
    agent = FakeAgent(series(10))
    delivery = pipeline(agent, tmp_path, page_size=5)
    await delivery.recover()
    await delivery.pull()
    faulty = FaultyOs(fail_at)
    monkeypatch.setattr(files, "os", faulty)
    with pytest.raises(StorageError):
        await delivery.pull()
    assert faulty.failed is not None
    assert agent.acked == [("e1", 5)]
    monkeypatch.setattr(files, "os", os)
    await delivery.pull()
    assert identities(tmp_path) == [("e1", n) for n in range(1, 11)]
    assert agent.acked[-1] == ("e1", 10)


async def test_torn_last_line_is_cut_before_appending(tmp_path: Path) -> None:
    agent = FakeAgent(series(8))
    delivery = pipeline(agent, tmp_path, page_size=4)
    await delivery.recover()
    await delivery.pull()
    day = tmp_path / "a" / "bus1" / "2026-11-24.csv"
    with day.open("a") as file:
        file.write("2026-11-24T22:00:05.000Z,bus1,bus1-ph")  # torn: no newline
    await delivery.pull()
    assert identities(tmp_path) == [("e1", n) for n in range(1, 9)]
    assert day.read_text().count("\n") == 9  # header + 8 rows, nothing torn left


async def test_epoch_lineage_a_b_a_never_archives_twice(tmp_path: Path) -> None:
    agent = FakeAgent(series(5))
    delivery = pipeline(agent, tmp_path)
    await delivery.recover()
    await delivery.pull()
    a_readings = agent.journal
    # B: another journal (a different SD card) ...
    agent.epoch, agent.journal = "e2", series(3, at=START + timedelta(hours=1))
    delivered = await delivery.pull()
    assert [r.seq for r in delivered.readings] == [1, 2, 3]
    # ... then A again, with two more readings: only those are new.
    agent.epoch = "e1"
    agent.journal = [*a_readings, *series(2, first=6, at=START + timedelta(hours=2))]
    agent.asked.clear()
    delivered = await delivery.pull()
    assert [r.seq for r in delivered.readings] == [6, 7]
    assert agent.asked[-1] == 5  # asked after A's high-water mark, not from 0
    assert identities(tmp_path) == [
        *(("e1", n) for n in range(1, 6)),
        *(("e2", n) for n in range(1, 4)),
        ("e1", 6),
        ("e1", 7),
    ]
    saved = json.loads((tmp_path / "lineage.json").read_text())
    assert saved["epochs"] == {"e1": 7, "e2": 3}
    assert agent.acked[-1] == ("e1", 7)


@pytest.mark.parametrize("archived", [10, 5])
async def test_an_epoch_started_by_recovery_continues_its_ancestor(
    tmp_path: Path, archived: int
) -> None:
    """The agent lost readings 9-10 of e1 and started e2, which inherits e1's 1-8 under
    their numbers; its new readings start at 9. Nothing inherited that Home Assistant
    has is taken again; inherited readings it lacks are."""
    agent = FakeAgent(series(10))
    delivery = pipeline(agent, tmp_path, page_size=archived)
    await delivery.recover()
    await delivery.pull()
    agent.epoch, agent.lineage = "e2", (Ancestor("e1", 8),)
    agent.journal = [*agent.journal[:8], *series(4, first=9, at=START + timedelta(hours=1))]
    agent.asked.clear()
    await delivery.drain(10)
    assert min(agent.asked) == min(archived, 8)  # never from the start of e2
    expected = [("e1", n) for n in range(1, archived + 1)]
    expected += [("e2", n) for n in range(min(archived, 8) + 1, 13)]
    assert identities(tmp_path) == expected
    assert agent.acked[-1] == ("e2", 12)


async def test_lost_lineage_file_is_recovered_from_the_archive(tmp_path: Path) -> None:
    agent = FakeAgent(series(12))
    delivery = pipeline(agent, tmp_path, page_size=5)
    await delivery.recover()
    await delivery.pull()
    await delivery.pull()
    (tmp_path / "lineage.json").unlink()
    restarted = pipeline(agent, tmp_path, page_size=5)
    await restarted.recover()
    assert restarted.lineage.epochs == {"e1": 10}
    await restarted.pull()
    assert identities(tmp_path) == [("e1", n) for n in range(1, 13)]


async def test_version_1_cursor_is_read_as_lineage(tmp_path: Path) -> None:
    (tmp_path / "lineage.json").write_text(json.dumps({"epoch": "e1", "seq": 4, "pending": {}}))
    agent = FakeAgent(series(6))
    delivery = pipeline(agent, tmp_path)
    await delivery.recover()
    delivered = await delivery.pull()
    assert [r.seq for r in delivered.readings] == [5, 6]


async def test_page_from_another_agent_is_refused(tmp_path: Path) -> None:
    agent = FakeAgent(series(3))
    agent.agent_id = "0123456789abcdef"
    delivery = pipeline(agent, tmp_path)
    await delivery.recover()
    with pytest.raises(BioreactorWrongAgentError):
        await delivery.pull()
    assert not (tmp_path / "a").exists()
    assert agent.acked == []


async def test_refused_ack_is_repeated_later(tmp_path: Path) -> None:
    agent = FakeAgent(series(3))
    delivery = pipeline(agent, tmp_path)
    await delivery.recover()
    agent.refuse_ack = True
    await delivery.pull()
    assert agent.acked == []
    agent.refuse_ack = False
    await delivery.pull()
    assert agent.acked == [("e1", 3)]
    assert len(archive_rows(tmp_path / "a")) == 3


async def test_a_cancelled_store_holds_the_agent_lock_until_it_finishes(tmp_path: Path) -> None:
    """A reload cancels the old pipeline mid-store; the new one's recovery waits for the
    storage job, then sees what it wrote, and delivers nothing twice."""
    agent = FakeAgent(series(20))
    lock = asyncio.Lock()
    release = threading.Event()
    started = threading.Event()

    async def slow_blocking(job: Any, *args: Any) -> Any:
        def run() -> Any:
            started.set()
            release.wait(10)
            return job(*args)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    old = pipeline(agent, tmp_path, lock=lock, page_size=10)
    old._run_blocking = slow_blocking
    task = asyncio.create_task(old.pull())
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    task.cancel()
    new = pipeline(agent, tmp_path, lock=lock, page_size=10)
    recovering = asyncio.create_task(new.recover())
    await asyncio.sleep(0.05)
    assert not recovering.done()  # waits for the old job
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await recovering
    assert new.position.seq == 10
    await new.drain(10)
    assert identities(tmp_path) == [("e1", n) for n in range(1, 21)]
