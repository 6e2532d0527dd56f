"""The journal after crashes: SIGKILL mid-append, a damaged WAL tail, a corrupt database file."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bioreactor_edge.journal import DB_NAME, Journal
from bioreactor_edge.journal_recovery import FRAME_HEADER_BYTES, WAL_HEADER_BYTES
from bioreactor_edge.models import NewReading, Reading
from tests.edge.journal_crash_writer import PER_TICK, tick_readings

WRITER = Path(__file__).with_name("journal_crash_writer.py")
CRASH_CYCLES = 20
DAMAGE_CASES = 200


async def read_all(journal: Journal) -> list[Reading]:
    rows, more = await journal.read_after(0, 10_000_000)
    assert not more
    return rows


def as_new(stored: Reading) -> NewReading:
    return NewReading(
        time_ms=stored.time_ms,
        reactor=stored.reactor,
        sensor=stored.sensor,
        quantity=stored.quantity,
        value=stored.value,
        unit=stored.unit,
        quality=stored.quality,
    )


def run_and_kill(directory: Path, cycle: int, rng: random.Random) -> list[tuple[int, int, int]]:
    """Start the writer, SIGKILL it at a random moment; return its (tick, first, last) lines."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), str(cycle)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for _ in range(rng.randint(1, 4)):
            assert proc.stdout.readline(), "the writer died on its own"
        time.sleep(rng.uniform(0, 0.05))
    finally:
        proc.send_signal(signal.SIGKILL)
        output = proc.stdout.read()
        proc.stdout.close()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reported = []
    # Lines read before the kill were consumed above; only whole lines count as reported.
    for line in output.split("\n")[:-1]:
        c, tick, first, last = map(int, line.split())
        assert c == cycle
        reported.append((tick, first, last))
    return reported


async def test_sigkill_never_loses_a_reported_reading(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    expected: dict[int, NewReading] = {}
    previous_last = 0
    for cycle in range(CRASH_CYCLES):
        proc_lines = await asyncio.to_thread(run_and_kill, tmp_path, cycle, rng)
        for tick, first, last in proc_lines:
            assert last - first + 1 == PER_TICK
            assert first > previous_last, f"seq reused (seed {seed})"
            previous_last = last
            for seq, new in zip(range(first, last + 1), tick_readings(cycle, tick), strict=True):
                expected[seq] = new

    assert len(expected) >= CRASH_CYCLES * PER_TICK  # every cycle reported at least one tick
    journal = await Journal.open(tmp_path)
    try:
        stored = await read_all(journal)
        by_seq = {r.seq: as_new(r) for r in stored}
        missing = [seq for seq in expected if by_seq.get(seq) != expected[seq]]
        assert not missing, f"durable readings lost or changed (seed {seed}): {missing[:5]}"
        identities = [(r.reactor, r.value) for r in stored]
        assert len(identities) == len(set(identities)), f"duplicated readings (seed {seed})"
        assert not journal.recovery.new_epoch
        newest = journal.stats().newest_seq
        await journal.append(tick_readings(999, 0))
        page, _ = await journal.read_after(newest, 100)
        assert [r.seq for r in page] == list(range(newest + 1, newest + 1 + PER_TICK))
    finally:
        await journal.close()


# -- damaged WAL tail ------------------------------------------------------------


class PreparedWal:
    """A journal whose newer commits live only in its WAL, with each commit's end offset."""

    def __init__(self, root: Path) -> None:
        self.source = root / "source"
        self.commit_ends: list[int] = []  # WAL size after each commit in the WAL
        self.readings: list[NewReading] = []  # all readings, in seq order
        self.checkpointed = 0  # readings already in the database file
        asyncio.run(self._prepare())

    async def _prepare(self) -> None:
        first = await Journal.open(self.source)
        self.readings = tick_readings(0, 0)
        await first.append(self.readings)
        await first.close()  # checkpointed into the database file
        self.checkpointed = len(self.readings)
        journal = await Journal.open(self.source)
        wal = self.source / f"{DB_NAME}-wal"
        for tick in range(1, 13):
            batch = tick_readings(0, tick)
            await journal.append(batch)
            self.readings.extend(batch)
            self.commit_ends.append(wal.stat().st_size)
        # Copied while open: nothing is checkpointed, the data is only in the WAL.
        self.saved = self.source.parent / "saved"
        self.saved.mkdir()
        for suffix in ("", "-wal"):
            shutil.copyfile(self.source / f"{DB_NAME}{suffix}", self.saved / f"{DB_NAME}{suffix}")
        await journal.close()

    def surviving(self, damaged_at: int) -> tuple[int, int]:
        """(readings kept, end of the last intact commit) when byte `damaged_at` is bad."""
        if damaged_at < WAL_HEADER_BYTES:  # a bad header: SQLite ignores the whole WAL
            return self.checkpointed, 0
        kept = [end for end in self.commit_ends if end <= damaged_at]
        return self.checkpointed + len(kept) * PER_TICK, kept[-1] if kept else WAL_HEADER_BYTES


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedWal:
    return PreparedWal(tmp_path_factory.mktemp("wal"))


async def test_damaged_wal_tail_keeps_every_earlier_commit(
    prepared: PreparedWal, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    wal_size = prepared.commit_ends[-1]
    for case in range(DAMAGE_CASES):
        directory = tmp_path / str(case)
        shutil.copytree(prepared.saved, directory)
        wal = directory / f"{DB_NAME}-wal"
        data = bytearray(wal.read_bytes())
        at = rng.randrange(wal_size)
        truncate = case % 2 == 0
        if truncate:
            del data[at:]
            damaged_size = at
        else:
            data[at] ^= 1 << rng.randrange(8)
            damaged_size = wal_size
        wal.write_bytes(bytes(data))
        kept, intact_end = prepared.surviving(at)
        context = f"case {case}, seed {seed}, {'truncate' if truncate else 'flip'} at {at}"

        journal = await Journal.open(directory)
        try:
            stored = await read_all(journal)
            assert [as_new(r) for r in stored] == prepared.readings[:kept], context
            report = journal.recovery
            assert not report.new_epoch, context
            lost = damaged_size - intact_end
            assert report.discarded_bytes == lost, context
            if intact_end == 0:
                assert "whole WAL ignored" in report.message, context
            elif lost:
                assert report.discarded_frames == -(-lost // (FRAME_HEADER_BYTES + 4096)), context
                assert "after the last valid commit frame" in report.message, context
            else:
                assert (report.discarded_frames, report.message) == (0, ""), context
            # It keeps working, with the next seq after the last surviving one.
            await journal.append(tick_readings(1, case))
            assert journal.stats().newest_seq == kept + PER_TICK, context
        finally:
            await journal.close()
        shutil.rmtree(directory)


# -- corrupt database file -------------------------------------------------------


async def test_corrupt_database_is_moved_aside_and_salvaged(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    originals = [r for tick in range(80) for r in tick_readings(0, tick)]
    await journal.append(originals)
    await journal.ack(journal.epoch, 450)
    old_epoch = journal.epoch
    await journal.close()

    db = directory / DB_NAME
    data = bytearray(db.read_bytes())
    page_size = 4096
    pages = len(data) // page_size
    victim = pages // 2  # a leaf of the readings table: the small tables come first
    data[victim * page_size : (victim + 1) * page_size] = random.randbytes(page_size)
    db.write_bytes(bytes(data))

    journal = await Journal.open(directory)
    try:
        report = journal.recovery
        assert report.new_epoch
        assert journal.epoch != old_epoch
        evidence = list(directory.glob("journal-corrupt-*.db"))
        assert len(evidence) == 1
        assert evidence[0].read_bytes() == bytes(data)  # kept byte for byte
        assert "corrupt" in report.message
        stored = await read_all(journal)
        assert report.salvaged_rows == len(stored)
        # Acknowledged readings are not salvaged; most unacknowledged ones are.
        unacked = originals[450:]
        assert len(unacked) // 2 < len(stored) < len(unacked)
        salvaged = [as_new(r) for r in stored]
        assert all(r in unacked for r in salvaged)
        assert salvaged == sorted(salvaged, key=unacked.index)
        assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    finally:
        await journal.close()


async def test_unreadable_database_starts_a_new_epoch(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    journal = await Journal.open(tmp_path)
    try:
        assert journal.recovery.new_epoch
        assert journal.recovery.salvaged_rows == 0
        assert len(list(tmp_path.glob("journal-corrupt-*.db"))) == 1
        await journal.append(tick_readings(0, 0))
        assert journal.stats().newest_seq == PER_TICK
    finally:
        await journal.close()
