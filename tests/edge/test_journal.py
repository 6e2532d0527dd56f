"""The journal on real SQLite files: durability, acks, retention, recovery, full disks."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bioreactor_edge import journal as journal_module
from bioreactor_edge.journal import (
    DB_NAME,
    AckBeyondNewest,
    EpochMismatch,
    Journal,
    JournalError,
    JournalUnavailable,
    TooManyConsumers,
    UnknownConsumer,
)
from bioreactor_edge.journal_lineage import FLOOR_FILE, Ancestor, Floor, FloorFile
from bioreactor_edge.models import NewReading, Reading

T0_MS = 1_795_575_600_000  # 2026-11-25T03:00:00Z
DAY_S = 86400.0
BIG = 10**9


def tick(n: int, size: int = 5, time_ms: int | None = None) -> list[NewReading]:
    """One sampling tick: `size` readings whose values encode (n, k) uniquely."""
    return [
        NewReading(
            time_ms=T0_MS + n * 1000 if time_ms is None else time_ms,
            reactor="bus1",
            sensor=f"bus1-s{k}",
            quantity="ph",
            value=n * 1000.0 + k,
            unit="pH",
            quality="good",
        )
        for k in range(size)
    ]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def read_all(journal: Journal) -> list[Reading]:
    readings, more = await journal.read_after(0, BIG)
    assert more is False
    return readings


# -- appending and reading ---------------------------------------------------------


async def test_append_and_read_after(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j")
    try:
        assert journal.recovery.new_epoch is True
        assert journal.recovery.message == ""
        assert await journal.read_after(0, 10) == ([], False)
        await journal.append([])  # nothing to do
        assert journal.stats().newest_seq == 0
        for n in range(10):
            await journal.append(tick(n, 3))
        stats = journal.stats()
        assert stats.newest_seq == 30
        assert stats.pending == 30
        assert stats.acked_seq == 0
        assert stats.writable is True
        assert stats.bytes > 0
        page, more = await journal.read_after(0, 4)
        assert [r.seq for r in page] == [1, 2, 3, 4]
        assert more is True
        assert page[0] == Reading(1, T0_MS, "bus1", "bus1-s0", "ph", 0.0, "pH", "good")
        assert page[3] == Reading(4, T0_MS + 1000, "bus1", "bus1-s0", "ph", 1000.0, "pH", "good")
        page, more = await journal.read_after(26, 4)
        assert [r.seq for r in page] == [27, 28, 29, 30]
        assert more is False
        page, more = await journal.read_after(25, 4)
        assert more is True
        assert await journal.read_after(30, 4) == ([], False)
        # Paging visits every reading once.
        seen: list[int] = []
        after = 0
        while True:
            page, more = await journal.read_after(after, 7)
            seen += [r.seq for r in page]
            if not more:
                break
            after = page[-1].seq
        assert seen == list(range(1, 31))
    finally:
        await journal.close()


async def test_closed_journal_counts_appends_as_dropped(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j")
    await journal.close()
    await journal.close()  # idempotent
    await journal.append(tick(0))  # never raises: the readings are counted as gone
    assert journal.stats().dropped_by_cause["shutdown"] == 5
    assert journal.stats().dropped == 5
    with pytest.raises(JournalError):
        await journal.read_after(0, 1)


async def test_concurrent_appends(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    try:
        await asyncio.gather(*(journal.append(tick(n, 4)) for n in range(50)))
        readings = await read_all(journal)
        seqs = [r.seq for r in readings]
        assert seqs == list(range(1, 201))
        # Each append's readings stay together and in order.
        by_value = {r.value: r.seq for r in readings}
        assert len(by_value) == 200
        for n in range(50):
            batch = [by_value[n * 1000.0 + k] for k in range(4)]
            assert batch == list(range(batch[0], batch[0] + 4))
        assert journal.stats().newest_seq == 200
        # Concurrent appends while reading.
        results = await asyncio.gather(
            *(journal.append(tick(n, 2)) for n in range(100, 150)),
            journal.read_after(0, BIG),
        )
        assert len(results[-1][0]) >= 200
    finally:
        await journal.close()
    reopened = await Journal.open(directory)
    try:
        readings = await read_all(reopened)
        assert [r.seq for r in readings] == list(range(1, 301))
        assert len({r.value for r in readings}) == 300
        assert reopened.recovery.new_epoch is False
    finally:
        await reopened.close()


async def test_cancelled_append_still_commits(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j")
    try:
        tasks = [asyncio.create_task(journal.append(tick(n))) for n in range(10)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await journal.append(tick(99))
        readings = await read_all(journal)
        assert len(readings) == 55
        assert len({r.value for r in readings}) == 55
    finally:
        await journal.close()


# -- epochs --------------------------------------------------------------------------


async def test_epoch_persists_and_changes_when_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    first = journal.epoch
    await journal.append(tick(0))
    await journal.close()
    assert len(first) >= 8
    journal = await Journal.open(directory)
    assert journal.epoch == first
    assert journal.recovery.new_epoch is False
    assert journal.stats().newest_seq == 5
    await journal.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{directory / DB_NAME}{suffix}").unlink(missing_ok=True)
    journal = await Journal.open(directory)
    try:
        assert journal.epoch != first
        assert journal.recovery.new_epoch is True
        assert journal.stats().newest_seq == 0
        assert await journal.read_after(0, 10) == ([], False)
    finally:
        await journal.close()


async def test_db_file_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    await journal.close()
    assert (directory / DB_NAME).stat().st_mode & 0o077 == 0


# -- acknowledgements ------------------------------------------------------------------


async def test_ack(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    try:
        for n in range(4):
            await journal.append(tick(n))
        with pytest.raises(EpochMismatch):
            await journal.ack("0000000000000000", 5)
        with pytest.raises(AckBeyondNewest):
            await journal.ack(journal.epoch, 21)
        assert journal.stats().acked_seq == 0
        assert await journal.ack(journal.epoch, 12) == 12
        assert journal.stats().acked_seq == 12
        assert journal.stats().pending == 8
        assert await journal.ack(journal.epoch, 3) == 12
        assert await journal.ack(journal.epoch, 0) == 12
        assert await journal.ack(journal.epoch, 12) == 12
        assert journal.stats().acked_seq == 12
        with pytest.raises(EpochMismatch):
            await journal.ack(journal.epoch + "x", 20)
        assert journal.stats().acked_seq == 12
        assert await journal.ack(journal.epoch, 20) == 20
        assert journal.stats().pending == 0
        # Acknowledged readings are still readable until retention removes them.
        assert len(await read_all(journal)) == 20
    finally:
        await journal.close()
    journal = await Journal.open(directory)
    try:
        assert journal.stats().acked_seq == 20
        assert await journal.ack(journal.epoch, 5) == 20
    finally:
        await journal.close()


async def test_concurrent_acks_keep_highest(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j")
    try:
        await journal.append(tick(0, 100))
        seqs = list(range(1, 101))
        random.Random(3).shuffle(seqs)
        results = await asyncio.gather(*(journal.ack(journal.epoch, s) for s in seqs))
        assert max(results) == 100
        assert journal.stats().acked_seq == 100
    finally:
        await journal.close()


# -- retention -------------------------------------------------------------------------


async def test_retention_by_age(tmp_path: Path) -> None:
    clock = Clock(T0_MS / 1000)
    directory = tmp_path / "j"
    journal = await Journal.open(directory, retention_s=30 * DAY_S, clock=clock)
    try:
        old = T0_MS - int(40 * DAY_S * 1000)
        await journal.append(tick(1, 10, time_ms=old))  # seq 1-10, old
        await journal.append(tick(2, 10, time_ms=T0_MS - 1000))  # seq 11-20, recent
        await journal.append(tick(3, 10, time_ms=old))  # seq 21-30, old
        await journal.ack(journal.epoch, 25)
        await journal.enforce_retention()
        seqs = [r.seq for r in await read_all(journal)]
        # Acked and old: gone. Acked but recent: kept. Old but unacked (26-30): kept.
        assert seqs == list(range(11, 21)) + list(range(26, 31))
        stats = journal.stats()
        assert stats.pending == 5
        assert stats.dropped == 0
        assert stats.retention_days == 30
        # Time passes: the recent ones age out too; unacked ones never do.
        clock.now += 31 * DAY_S
        await journal.enforce_retention()
        assert [r.seq for r in await read_all(journal)] == list(range(26, 31))
        await journal.append(tick(4, 1))
        assert journal.stats().newest_seq == 31
    finally:
        await journal.close()
    journal = await Journal.open(directory, retention_s=30 * DAY_S, clock=clock)
    try:
        assert [r.seq for r in await read_all(journal)] == list(range(26, 32))
        assert journal.stats().pending == 6
    finally:
        await journal.close()


async def test_seq_never_reused(tmp_path: Path) -> None:
    clock = Clock(T0_MS / 1000 + 100 * DAY_S)
    directory = tmp_path / "j"
    journal = await Journal.open(directory, retention_s=DAY_S, clock=clock)
    try:
        for n in range(3):
            await journal.append(tick(n))
        await journal.ack(journal.epoch, 15)
        await journal.enforce_retention()
        assert await read_all(journal) == []
        assert journal.stats().newest_seq == 15
        assert journal.stats().pending == 0
    finally:
        await journal.close()
    journal = await Journal.open(directory, retention_s=DAY_S, clock=clock)
    try:
        assert journal.stats().newest_seq == 15
        assert journal.stats().pending == 0
        await journal.append(tick(9, 2))
        assert [r.seq for r in await read_all(journal)] == [16, 17]
        assert journal.stats().pending == 2
    finally:
        await journal.close()


async def test_budget(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    budget = 200_000
    journal = await Journal.open(directory, budget_bytes=budget)
    try:
        for n in range(4):  # seq 1-4000: acknowledged
            await journal.append(tick(n, 1000))
        await journal.ack(journal.epoch, 4000)
        for n in range(4, 6):  # seq 4001-6000: not acknowledged
            await journal.append(tick(n, 1000))
        await journal.enforce_retention()
        seqs = [r.seq for r in await read_all(journal)]
        assert seqs[0] > 1  # some acknowledged readings went
        assert seqs == list(range(seqs[0], 6001))  # and no unacknowledged one
        stats = journal.stats()
        assert stats.dropped == 0
        assert stats.pending == 2000
        assert stats.budget_bytes == budget

        for n in range(6, 12):  # 6000 more unacknowledged: over budget on their own
            await journal.append(tick(n, 1000))
        await journal.enforce_retention()
        seqs = [r.seq for r in await read_all(journal)]
        first = seqs[0]
        assert first > 4001  # every acknowledged reading went, then the oldest unacked
        assert seqs == list(range(first, 12001))
        stats = journal.stats()
        assert stats.dropped == first - 4001
        assert stats.dropped > 0
        assert stats.pending == 12001 - first
        used = await journal._run(journal._used_bytes)
        assert used <= budget
    finally:
        await journal.close()
    journal = await Journal.open(directory, budget_bytes=budget)
    try:
        stats = journal.stats()
        assert stats.dropped == first - 4001
        assert stats.newest_seq == 12000
        assert stats.acked_seq == 4000
        assert stats.pending == 12001 - first
        assert [r.seq for r in await read_all(journal)] == list(range(first, 12001))
        await journal.append(tick(50))
        assert journal.stats().newest_seq == 12005
    finally:
        await journal.close()


# -- crash recovery ----------------------------------------------------------------------

APPENDER = """
import asyncio, sys
from pathlib import Path
from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading

async def main():
    journal = await Journal.open(Path(sys.argv[1]))
    cycle = int(sys.argv[2])
    limit = int(sys.argv[3])
    n = 0
    while n < limit:
        await journal.append([
            NewReading(1795575600000 + n, "bus1", f"s{k}", "ph", cycle * 1e6 + n * 10 + k, "pH",
                       "good")
            for k in range(5)
        ])
        n += 1
        print(journal.stats().newest_seq, journal.epoch, flush=True)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def start_appender(directory: Path, cycle: int, limit: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(directory), str(cycle), str(limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> bytes:
    process.send_signal(signal.SIGKILL)
    assert process.stdout is not None
    rest = process.stdout.read()
    process.wait(timeout=30)
    return rest


def test_crash_recovery(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    rng = random.Random(20261125)
    reported: list[int] = []
    epochs: set[str] = set()
    for cycle in range(20):
        process = start_appender(directory, cycle, 10**9)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.endswith(b"\n"), "the appender died before its first commit"
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            rest = kill(process)
        assert process.returncode == -signal.SIGKILL
        lines = (first + rest).split(b"\n")[:-1]  # a torn last line is ignored
        cycle_seqs = [int(line.split()[0]) for line in lines]
        epochs.update(line.split()[1].decode() for line in lines)
        assert cycle_seqs == sorted(set(cycle_seqs))
        if reported:
            assert cycle_seqs[0] > reported[-1]
        reported += cycle_seqs

    async def check() -> None:
        journal = await Journal.open(directory)
        try:
            assert journal.recovery.new_epoch is False
            epochs.add(journal.epoch)
            readings = await read_all(journal)
            seqs = [r.seq for r in readings]
            newest = journal.stats().newest_seq
            assert seqs == list(range(1, newest + 1))  # no gap, no duplicate
            assert set(reported) <= set(seqs)  # everything reported durable is there
            assert newest >= reported[-1]
            values = [r.value for r in readings]
            assert len(set(values)) == len(values)  # no reading written twice
            # Every commit was whole: readings come in complete ticks of five.
            assert newest % 5 == 0
        finally:
            await journal.close()

    asyncio.run(check())
    assert len(epochs) == 1


# -- torn WAL tails ----------------------------------------------------------------------

TICKS = 30
TICK_SIZE = 5


def wal_layout(wal: bytes) -> tuple[int, list[bool]]:
    """Frame size and, per frame, whether it is a commit frame."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    frame_bytes = 24 + page_size
    commits = []
    for offset in range(32, len(wal) - frame_bytes + 1, frame_bytes):
        commits.append(struct.unpack(">I", wal[offset + 4 : offset + 8])[0] != 0)
    assert 32 + len(commits) * frame_bytes == len(wal)
    return frame_bytes, commits


@pytest.fixture(scope="module")
def wal_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A journal database and its WAL as left by a killed agent (TICKS commits in the WAL)."""
    directory = tmp_path_factory.mktemp("walsource") / "j"

    async def create() -> None:
        journal = await Journal.open(directory)
        await journal.close()  # checkpointed: the WAL starts empty

    asyncio.run(create())
    process = start_appender(directory, 7, TICKS)
    try:
        assert process.stdout is not None
        while (line := process.stdout.readline()) != b"ready\n":
            assert line, "the appender died"
    finally:
        kill(process)
    db = (directory / DB_NAME).read_bytes()
    wal = Path(f"{directory / DB_NAME}-wal").read_bytes()
    return db, wal


async def open_copy(directory: Path, db: bytes, wal: bytes) -> tuple[Journal, list[Reading]]:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir()
    (directory / DB_NAME).write_bytes(db)
    Path(f"{directory / DB_NAME}-wal").write_bytes(wal)
    journal = await Journal.open(directory)
    try:
        return journal, await read_all(journal)
    except BaseException:
        await journal.close()
        raise


# -- a corrupt database ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["middle", "header"])
async def test_corrupt_database(tmp_path: Path, where: str) -> None:
    directory = tmp_path / "j"
    journal = await Journal.open(directory)
    for n in range(20):
        await journal.append(tick(n, 500))
    await journal.ack(journal.epoch, 5000)
    old_epoch = journal.epoch
    original = {r.seq: r.value for r in await read_all(journal) if r.seq > 5000}
    await journal.close()
    path = directory / DB_NAME
    data = bytearray(path.read_bytes())
    assert len(data) > 100_000
    garbage = random.Random(5).randbytes(8192)
    offset = len(data) // 2 if where == "middle" else 0
    data[offset : offset + len(garbage)] = garbage
    path.write_bytes(bytes(data))

    journal = await Journal.open(directory)
    try:
        assert journal.recovery.new_epoch is True
        assert journal.epoch != old_epoch
        assert "corrupt" in journal.recovery.message
        evidence = list(directory.glob("journal-corrupt-*.db"))
        assert len(evidence) == 1
        assert evidence[0].read_bytes() == bytes(data)  # kept byte for byte
        assert not list(directory.glob("salvage-scratch*"))
        readings = await read_all(journal)
        assert journal.recovery.salvaged_rows == len(readings)
        # Salvaged readings are unacknowledged ones of the old epoch under their old seqs,
        # and the new epoch says so: (new epoch, seq) is (old epoch, seq) up to seq 10000.
        by_seq = {r.seq: r.value for r in readings}
        assert all(5000 < seq <= 10_000 for seq in by_seq)
        assert all(original[seq] == value for seq, value in by_seq.items())
        stats = journal.stats()
        assert stats.lineage == (Ancestor(old_epoch, 10_000),)
        assert stats.new_epoch_unacked
        if where == "middle":
            assert 0 < len(readings) <= len(original)
            assert stats.acked_seq == 5000
            # Every unacknowledged reading is either salvaged or counted as gone.
            assert journal.recovery.lost_readings == 5000 - len(readings)
        else:
            # The watermark is unreadable: everything not salvaged counts as gone.
            assert stats.acked_seq == 0
            assert journal.recovery.lost_readings == 10_000 - len(readings)
        lost = journal.recovery.lost_readings
        assert stats.dropped_by_cause["recovery"] == lost
        # New readings continue above every number the old epoch used.
        await journal.append(tick(77, 1))
        assert journal.stats().newest_seq == 10_001
        await journal.ack(journal.epoch, 10_001)
        assert not journal.stats().new_epoch_unacked
    finally:
        await journal.close()
    journal = await Journal.open(directory)
    try:
        assert journal.recovery.new_epoch is False
        assert journal.recovery.message == ""
        assert len(list(directory.glob("journal-corrupt-*.db"))) == 1
        assert journal.stats().dropped_by_cause["recovery"] == lost  # persisted
        assert not journal.stats().new_epoch_unacked
    finally:
        await journal.close()


async def test_not_our_database(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    conn = sqlite3.connect(directory / DB_NAME)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    journal = await Journal.open(directory)
    try:
        assert journal.recovery.new_epoch is True
        assert len(list(directory.glob("journal-corrupt-*.db"))) == 1
        await journal.append(tick(0))
        assert journal.stats().newest_seq == 5
    finally:
        await journal.close()


# -- a full disk -------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        if os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)
    assert not os.path.ismount(mount)


def fill_disk(mount: Path) -> Path:
    """Leaves about 120 kB free on `mount`; the filler file, to free it again."""
    filler = mount / "filler"
    stat = os.statvfs(mount)
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 120_000))
    return filler


async def append_batch(journal: Journal, n: int, appended: list[float]) -> None:
    """Appends batch `n` (ten readings), adding its values to `appended`."""
    batch = tick(n, 10)
    await journal.append(batch)
    appended += [r.value for r in batch]


async def append_until_unwritable(journal: Journal, appended: list[float]) -> int:
    """Appends batches until the journal reports its disk full; the next batch's number."""
    n = 0
    while journal.stats().writable:
        await append_batch(journal, n, appended)
        n += 1
        assert n < 5000, "the disk never filled"
    return n


async def test_disk_full(tiny_disk: Path) -> None:
    mount = tiny_disk
    journal: Journal | None = None
    try:
        journal = await Journal.open(mount / "journal")
        filler = fill_disk(mount)
        appended: list[float] = []
        n = await append_until_unwritable(journal, appended)
        stats = journal.stats()
        assert stats.newest_seq < len(appended)
        assert stats.pending == len(appended)  # the parked readings are counted
        assert stats.dropped == 0
        for _ in range(3):  # still full: more readings wait in memory
            await append_batch(journal, n, appended)
            n += 1
        assert journal.stats().writable is False
        assert journal.stats().pending == len(appended)
        await journal.enforce_retention()  # still full: nothing changes, nothing fails
        assert journal.stats().writable is False
        filler.unlink()
        await journal.enforce_retention()
        stats = journal.stats()
        assert stats.writable is True
        assert stats.newest_seq == len(appended)
        assert stats.pending == len(appended)
        await append_batch(journal, n, appended)
        readings = await read_all(journal)
        assert [r.value for r in readings] == appended  # all there, once, in order
        assert [r.seq for r in readings] == list(range(1, len(appended) + 1))
        await journal.close()
        journal = await Journal.open(mount / "journal")
        readings = await read_all(journal)
        assert [r.value for r in readings] == appended
        assert journal.stats().dropped == 0
    finally:
        if journal is not None:
            await journal.close()


async def test_disk_full_on_append_path(tiny_disk: Path) -> None:
    """Freed space is used by the next append, not only by retention."""
    mount = tiny_disk
    journal: Journal | None = None
    try:
        journal = await Journal.open(mount / "journal")
        filler = fill_disk(mount)
        appended: list[float] = []
        n = await append_until_unwritable(journal, appended)
        filler.unlink()
        await append_batch(journal, n, appended)
        assert journal.stats().writable is True
        readings = await read_all(journal)
        assert [r.value for r in readings] == appended
    finally:
        if journal is not None:
            await journal.close()


async def test_backlog_overflow_counts_drops(
    tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "BACKLOG_CAP", 25)
    mount = tiny_disk
    journal: Journal | None = None
    try:
        journal = await Journal.open(mount / "journal")
        filler = fill_disk(mount)
        appended: list[float] = []
        n = await append_until_unwritable(journal, appended)
        stored = journal.stats().newest_seq
        parked = len(appended) - stored
        assert 0 < parked <= 25
        for _ in range(5):
            await append_batch(journal, n, appended)
            n += 1
        stats = journal.stats()
        parked_total = len(appended) - stored
        assert stats.dropped == parked_total - 25
        assert stats.dropped_by_cause["disk_full"] == parked_total - 25
        assert stats.pending == stored + 25
        filler.unlink()
        await journal.enforce_retention()
        stats = journal.stats()
        assert stats.writable is True
        assert stats.newest_seq == stored + 25
        expected = appended[:stored] + appended[-25:]  # the oldest parked ones were dropped
        assert [r.value for r in await read_all(journal)] == expected
        await journal.close()
        journal = await Journal.open(mount / "journal")
        assert journal.stats().dropped == parked_total - 25  # persisted
        assert [r.value for r in await read_all(journal)] == expected
    finally:
        if journal is not None:
            await journal.close()


async def test_lost_frames_never_pass_for_stale(
    tmp_path: Path, wal_journal: tuple[bytes, bytes]
) -> None:
    """A damaged salt-1 in a current frame (salt-2 intact) loses committed data: report it.

    Frames of an earlier WAL generation differ in salt-2 too (SQLite draws a new salt-2 at
    every WAL reset), so an intact salt-2 means the frame belongs to the current generation.
    """
    db, wal = wal_journal
    frame_bytes, commits = wal_layout(wal)
    salt1 = struct.unpack(">I", wal[16:20])[0]
    first_commit = commits.index(True)
    frame = first_commit + 1  # the first frame of the second tick
    offset = 32 + frame * frame_bytes
    data = bytearray(wal)
    data[offset + 8 : offset + 12] = struct.pack(">I", (salt1 - 1) % (1 << 32))
    journal, readings = await open_copy(tmp_path / "case", db, bytes(data))
    try:
        assert len(readings) == TICK_SIZE  # only the first tick survived
        assert journal.recovery.discarded_bytes == len(wal) - offset, journal.recovery
        assert journal.recovery.discarded_frames == len(commits) - frame
        assert journal.recovery.message
        # Later commits were durable: their seqs may have been served. A new epoch, and
        # the readings counter in the discarded frames tells exactly how many are gone.
        assert journal.recovery.new_epoch
        assert journal.recovery.lost_readings == (TICKS - 1) * TICK_SIZE
        stats = journal.stats()
        assert stats.lineage[0].through_seq == TICK_SIZE
        assert stats.dropped_by_cause["recovery"] == (TICKS - 1) * TICK_SIZE
    finally:
        await journal.close()


async def test_budget_enforced_while_appending(tmp_path: Path) -> None:
    """Without any retention run, the periodic budget check keeps the file near its budget."""
    from bioreactor_edge.journal import BUDGET_CHECK_EVERY

    directory = tmp_path / "j"
    budget = 150_000
    journal = await Journal.open(directory, budget_bytes=budget)
    try:
        for n in range(BUDGET_CHECK_EVERY):
            await journal.append(tick(n, 40))
        stats = journal.stats()
        assert stats.newest_seq == BUDGET_CHECK_EVERY * 40
        assert stats.dropped > 0
        readings = await read_all(journal)
        assert readings[0].seq == stats.dropped + 1
        assert readings[-1].seq == stats.newest_seq
        assert stats.pending == len(readings)
        assert await journal._run(journal._used_bytes) <= budget
    finally:
        await journal.close()


def one(n: int) -> NewReading:
    return NewReading(
        time_ms=T0_MS + n,
        reactor="r1",
        sensor="ph",
        quantity="ph",
        value=n / 10,
        unit="pH",
        quality="good",
    )


async def test_group_commit_batches_concurrent_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = 0
    insert = Journal._insert

    def counting_insert(self: Journal, readings: list[NewReading]) -> None:
        nonlocal transactions
        transactions += 1
        insert(self, readings)

    monkeypatch.setattr(Journal, "_insert", counting_insert)
    journal = await Journal.open(tmp_path)
    try:
        ticks = [[one(t * 10 + i) for i in range(3)] for t in range(200)]
        await asyncio.gather(*(journal.append(tick) for tick in ticks))
        assert transactions < len(ticks) / 4
        stored, more = await journal.read_after(0, 10_000)
        assert not more
        assert [r.seq for r in stored] == list(range(1, 601))
        by_value = {r.value: r.seq for r in stored}
        for tick in ticks:
            seqs = [by_value[r.value] for r in tick]
            assert seqs == list(range(seqs[0], seqs[0] + 3))
    finally:
        await journal.close()


async def test_read_after_seeks_on_the_primary_key(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path)
    await journal.append([one(1)])
    await journal.close()
    conn = sqlite3.connect(tmp_path / journal_module.DB_NAME)
    query = f"EXPLAIN QUERY PLAN {journal_module._READ_AFTER}"
    plan = " ".join(str(row[-1]) for row in conn.execute(query, (0, 10)))
    conn.close()
    # A range seek on the key, no sort: a page costs the same however long the backlog.
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid>?)" in plan
    assert "TEMP B-TREE" not in plan


# -- supervised journaling: no journal error reaches the appender --------------------------


async def test_failed_commit_parks_and_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert = Journal._insert
    failing = [True]

    def flaky(self: Journal, readings: list[NewReading]) -> None:
        if failing[0]:
            raise sqlite3.IntegrityError("constraint failed")
        insert(self, readings)

    journal = await Journal.open(tmp_path)
    try:
        monkeypatch.setattr(Journal, "_insert", flaky)
        await journal.append(tick(0))  # returns: parked, not raised
        stats = journal.stats()
        assert (stats.writable, stats.newest_seq, stats.pending) == (False, 0, 5)
        failing[0] = False
        await journal.append(tick(1))
        assert [r.value for r in await read_all(journal)] == [r.value for r in tick(0) + tick(1)]
        assert journal.stats().writable
    finally:
        await journal.close()


async def test_failure_after_a_durable_commit_is_not_a_failed_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget check after a commit fails: the append still succeeds, exactly once."""

    def broken(self: Journal) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal_module, "BUDGET_CHECK_EVERY", 1)
    monkeypatch.setattr(Journal, "_enforce_budget", broken)
    journal = await Journal.open(tmp_path)
    try:
        for n in range(3):
            await journal.append(tick(n))
        readings = await read_all(journal)
        assert [r.value for r in readings] == [r.value for t in range(3) for r in tick(t)]
        assert journal.stats().pending == 15
    finally:
        await journal.close()


async def test_locked_database_parks_readings(tmp_path: Path) -> None:
    """Another process holding the write lock (SQLITE_BUSY) delays readings, never loses them."""
    journal = await Journal.open(tmp_path)
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        await journal.append(tick(0))  # waits out the busy timeout, then parks
        assert not journal.stats().writable
        other.execute("COMMIT")
        await journal.enforce_retention()  # retries the backlog
        assert journal.stats().writable
        assert [r.value for r in await read_all(journal)] == [r.value for r in tick(0)]
    finally:
        other.close()
        await journal.close()


async def test_retention_failure_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Journal, *args: object, **kwargs: object) -> bool:
        raise OSError(errno.EIO, "Input/output error")

    journal = await Journal.open(tmp_path, retention_s=0)
    try:
        await journal.append(tick(0))
        await journal.ack(journal.epoch, 5)
        monkeypatch.setattr(Journal, "_delete_chunk", broken)
        await journal.enforce_retention()
        monkeypatch.undo()
        await journal.enforce_retention()
        assert await read_all(journal) == []
    finally:
        await journal.close()


async def test_parked_readings_at_close_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Journal, readings: list[NewReading]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    journal = await Journal.open(tmp_path)
    monkeypatch.setattr(Journal, "_insert", broken)
    await journal.append(tick(0, 7))
    await journal.close()
    monkeypatch.undo()
    assert journal.stats().dropped_by_cause["shutdown"] == 7
    reopened = await Journal.open(tmp_path)
    try:
        stats = reopened.stats()
        assert stats.dropped_by_cause["shutdown"] == 7  # persisted at close
        assert stats.dropped == 7
        assert stats.newest_seq == 0
    finally:
        await reopened.close()


# -- consumers ---------------------------------------------------------------------------


async def test_retention_keeps_what_the_slowest_consumer_has_not_acked(tmp_path: Path) -> None:
    clock = Clock(T0_MS / 1000)
    journal = await Journal.open(tmp_path, retention_s=10, clock=clock)
    try:
        await journal.append(tick(0, 10))
        page, _ = await journal.read_after(0, 3, consumer="grafana")  # registers at 0
        assert len(page) == 3
        assert journal.consumers() == {"default": 0, "grafana": 0}
        await journal.ack(journal.epoch, 10)  # the default consumer has everything
        await journal.ack(journal.epoch, 4, consumer="grafana")
        clock.now += 3600
        await journal.enforce_retention()
        assert [r.seq for r in await read_all(journal)] == list(range(5, 11))
        assert journal.stats().acked_seq == 10  # the default consumer's, as before
        await journal.remove_consumer("grafana")
        await journal.enforce_retention()
        assert await read_all(journal) == []
        with pytest.raises(UnknownConsumer):
            await journal.remove_consumer("grafana")
    finally:
        await journal.close()
    reopened = await Journal.open(tmp_path)
    try:
        assert reopened.consumers() == {"default": 10}
    finally:
        await reopened.close()


async def test_consumers_are_persisted_and_bounded(tmp_path: Path) -> None:
    from bioreactor_edge.journal import MAX_CONSUMERS

    journal = await Journal.open(tmp_path)
    await journal.append(tick(0))
    for n in range(MAX_CONSUMERS):
        await journal.ack(journal.epoch, n % 5, consumer=f"c{n}")
    with pytest.raises(TooManyConsumers):
        await journal.read_after(0, 1, consumer="one-too-many")
    await journal.close()
    reopened = await Journal.open(tmp_path)
    try:
        assert reopened.consumers()["c7"] == 2
        assert len(reopened.consumers()) == MAX_CONSUMERS + 1
    finally:
        await reopened.close()


# -- the served floor ----------------------------------------------------------------------


def test_floor_survives_a_torn_newest_slot(tmp_path: Path) -> None:
    floor_file = FloorFile(tmp_path)
    assert floor_file.open() is None
    floor_file.save(Floor("aaaa", 10))
    floor_file.save(Floor("aaaa", 20))  # generation 2, in slot 0
    data = bytearray((tmp_path / FLOOR_FILE).read_bytes())
    data[5] ^= 0xFF  # the newest record is torn: its CRC no longer matches
    (tmp_path / FLOOR_FILE).write_bytes(bytes(data))
    again = FloorFile(tmp_path)
    assert again.open() == Floor("aaaa", 10)
    again.save(Floor("aaaa", 30))  # overwrites the torn slot, wins over the older one
    assert FloorFile(tmp_path).open() == Floor("aaaa", 30)
    assert (tmp_path / FLOOR_FILE).stat().st_size == 1024  # allocated once, rewritten in place


def test_floor_keeps_the_recovery_count_and_reads_first_release_records(tmp_path: Path) -> None:
    floor_file = FloorFile(tmp_path)
    floor_file.open()
    floor_file.save(Floor("aaaa", 10, recovery_dropped=24))
    assert FloorFile(tmp_path).open() == Floor("aaaa", 10, 24)
    # A record of the first release: no drop count, its own magic; still the newest floor.
    record = struct.pack(">IQq64s", 0x42524546, 2, 42, b"bbbb")
    record += zlib.crc32(record).to_bytes(4, "big")
    with (tmp_path / FLOOR_FILE).open("r+b") as file:
        file.write(record)
    assert FloorFile(tmp_path).open() == Floor("bbbb", 42, 0)


async def test_floor_unmakeable_at_open_blocks_serving_not_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: FloorFile) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FloorFile, "_open_allocated", full)
    journal = await Journal.open(tmp_path)
    try:
        await journal.append(tick(0))  # sampling goes on
        with pytest.raises(JournalUnavailable):
            await journal.read_after(0, 10)  # never serve what the floor does not cover
        monkeypatch.undo()
        assert len((await journal.read_after(0, 10))[0]) == 5
    finally:
        await journal.close()
