"""Crash-test subprocess: appends ticks forever, printing each tick once it is durable.

Usage: python journal_crash_writer.py DIRECTORY CYCLE. Prints "CYCLE TICK FIRST LAST" per tick;
a reading's value encodes (cycle, tick, index) so the parent can check content after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading

PER_TICK = 45


def tick_readings(cycle: int, tick: int) -> list[NewReading]:
    return [
        NewReading(
            time_ms=1_800_000_000_000 + tick,
            reactor=f"cycle{cycle}",
            sensor=f"s{i % 5}",
            quantity="ph",
            value=tick * 1000 + i,
            unit="pH",
            quality="good",
        )
        for i in range(PER_TICK)
    ]


async def main(directory: Path, cycle: int) -> None:
    journal = await Journal.open(directory)
    tick = 0
    while True:
        await journal.append(tick_readings(cycle, tick))
        newest = journal.stats().newest_seq
        print(cycle, tick, newest - PER_TICK + 1, newest, flush=True)
        tick += 1


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
