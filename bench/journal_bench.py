"""Journal throughput against a bare SQLite ceiling, on the same disk, from one run.

Run with the edge venv's python: `python bench/journal_bench.py [--dir DIR]`. Prints:
(a) the journal's durable readings/s with many concurrent appenders (group commit, FULL sync),
(b) bare SQLite inserting the very same transactions (same schema, WAL + FULL, no journal logic),
(c) their ratio (goal >= 0.8), (d) read_after throughput in pages of 10,000 readings.
Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bioreactor_edge import journal as journal_module
from bioreactor_edge.agent import Agent
from bioreactor_edge.config import SamplingConfig, default_config
from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel

REPO = Path(__file__).resolve().parent.parent
PAGE = 10_000


def tick(appender: int, number: int, per_tick: int) -> list[NewReading]:
    """One sampling tick of one appender: `per_tick` sensors, one reading each."""
    return [
        NewReading(
            time_ms=1_800_000_000_000 + number * 1000,
            reactor=f"bus{appender}",
            sensor=f"bus{appender}-{i:02x}",
            quantity="ph",
            value=7.0 + i / 100,
            unit="pH",
            quality="good",
        )
        for i in range(per_tick)
    ]


async def journal_run(
    directory: Path, appenders: int, ticks: int, per_tick: int
) -> tuple[float, list[int], Journal]:
    """Durable readings/s through the journal, and the size of every transaction it made."""
    batches: list[int] = []
    insert = Journal._insert

    def recording_insert(self: Journal, readings: Sequence[NewReading]) -> None:
        batches.append(len(readings))
        insert(self, readings)

    Journal._insert = recording_insert  # type: ignore[method-assign]
    journal = await Journal.open(directory)
    await journal.append(tick(0, -1, 1))  # create the file and its schema outside the timing
    batches.clear()

    # Built before the clock starts: making readings is the sampler's cost, not the journal's.
    work = [[tick(i, number, per_tick) for number in range(ticks)] for i in range(appenders)]

    async def appender(own: list[list[NewReading]]) -> None:
        for readings in own:
            await journal.append(readings)

    start = time.perf_counter()
    await asyncio.gather(*(appender(own) for own in work))
    elapsed = time.perf_counter() - start
    Journal._insert = insert  # type: ignore[method-assign]
    return appenders * ticks * per_tick / elapsed, batches, journal


def bare_run(directory: Path, batches: list[int], per_tick: int) -> float:
    """Readings/s for plain executemany transactions of the same sizes, same schema and pragmas."""
    conn = sqlite3.connect(directory / "bare.db", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(journal_module._SCHEMA)
        conn.executemany(
            "INSERT INTO series (id, reactor, sensor, quantity, unit) "
            "VALUES (?, 'r', ?, 'ph', 'pH')",
            [(i, f"s{i}") for i in range(1, per_tick + 1)],
        )
        rows = [(1_800_000_000_000, 1 + i % per_tick, 7.0, "good") for i in range(max(batches))]
        start = time.perf_counter()
        for size in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO readings (time_ms, series, value, quality) VALUES (?, ?, ?, ?)",
                rows[:size],
            )
            conn.execute("COMMIT")
        return sum(batches) / (time.perf_counter() - start)
    finally:
        conn.close()


async def read_run(journal: Journal) -> tuple[float, float, int]:
    """(readings/s, ms per page, pages) draining the whole journal with read_after."""
    after, pages, total = 0, 0, 0
    start = time.perf_counter()
    while True:
        rows, more = await journal.read_after(after, PAGE)
        pages += 1
        total += len(rows)
        if rows:
            after = rows[-1].seq
        if not more:
            break
    elapsed = time.perf_counter() - start
    return total / elapsed, elapsed * 1000 / pages, pages


async def agent_cpu_run(directory: Path, seconds: float) -> tuple[float, int]:
    """CPU time per journaled reading of a whole agent: 45 simulated sensors at 1 Hz."""
    agent = Agent(
        replace(default_config(directory), sampling=SamplingConfig(interval_s=1.0)),
        agent_id="bench",
        raw_bus=lambda _n: build_reactor_bus(ReactorModel(seed=1), sensors=45, seed=1),
    )
    await agent.start()
    # Measure sampling, not discovery (it runs in the background).
    while agent.discovering:  # noqa: ASYNC110 (polls the agent's state)
        await asyncio.sleep(0.1)
    first = agent.journal.stats().newest_seq
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    readings = agent.journal.stats().newest_seq - first
    await agent.stop()
    return cpu / max(readings, 1), readings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO / ".bench-tmp", help="disk to test")
    parser.add_argument("--appenders", type=int, default=8, help="concurrent appenders")
    parser.add_argument("--ticks", type=int, default=400, help="ticks per appender")
    parser.add_argument("--per-tick", type=int, default=45, help="readings per tick")
    parser.add_argument("--agent-seconds", type=float, default=30.0, help="agent CPU run")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        journal_rate, batches, journal = await journal_run(
            root / "journal", args.appenders, args.ticks, args.per_tick
        )
        try:
            read_rate, page_ms, pages = await read_run(journal)
        finally:
            await journal.close()
        bare_rate = bare_run(root, batches, args.per_tick)
        cpu_per_reading, agent_readings = await agent_cpu_run(root / "agent", args.agent_seconds)

    readings = sum(batches)
    print(f"disk: {args.dir}")
    print(
        f"{args.appenders} appenders x {args.ticks} ticks x {args.per_tick} readings = "
        f"{readings} readings in {len(batches)} transactions "
        f"(mean {readings / len(batches):.0f} per transaction)"
    )
    print(f"{'measure':<44}{'value':>16}")
    print(f"{'(a) journal durable readings/s':<44}{journal_rate:>16,.0f}")
    print(f"{'(b) bare SQLite readings/s (same txns)':<44}{bare_rate:>16,.0f}")
    print(f"{'(c) ratio a/b (goal >= 0.80)':<44}{journal_rate / bare_rate:>16.2f}")
    print(f"{'(d) read_after readings/s (10k pages)':<44}{read_rate:>16,.0f}")
    print(f"{'    ms per 10k page':<44}{page_ms:>16.1f}")
    print(f"{'    pages read':<44}{pages:>16}")
    print(f"{'(e) agent CPU per reading, 45 sensors @ 1 Hz':<44}{cpu_per_reading * 1e6:>13,.0f} µs")
    print(f"{'    readings journaled in the agent run':<44}{agent_readings:>16}")


if __name__ == "__main__":
    asyncio.run(main())
