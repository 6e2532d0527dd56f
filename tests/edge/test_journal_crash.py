"""The journal after SIGKILL mid-append: nothing reported durable is lost, no seq is reused,
and an unfinished transaction never starts a new epoch (damage: test_journal_faults.py)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading, Reading
from tests.edge.journal_crash_writer import PER_TICK, tick_readings

WRITER = Path(__file__).with_name("journal_crash_writer.py")
CRASH_CYCLES = 20


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
