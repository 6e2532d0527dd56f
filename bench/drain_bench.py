"""Backlog drain: a real agent holding an outage backlog, drained by the integration's
real delivery pipeline (pull, parse, archive + fsync, cursor, ack). Run with the Home
Assistant venv's python; the agent runs on the edge venv's python:

    python bench/drain_bench.py --edge-python PATH [--readings 3900000]

Prints the drain time next to a ceiling measured in the same run (fetching every page
over HTTP without parsing, archiving or acknowledging), their ratio, and the projection
for the issue's target: a 24-hour backlog of 45 sensors at 1 Hz (~3.9 M readings) in
under 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.support.light_pipeline import install, run_blocking  # noqa: E402

install()
from custom_components.bioreactor.api import BioreactorClient  # noqa: E402
from custom_components.bioreactor.delivery.pipeline import Delivery  # noqa: E402
from tests.support.agent_process import AgentProcess  # noqa: E402

TARGET_READINGS = 3_900_000
TARGET_SECONDS = 300.0

PREFILL = """
import asyncio, sys
from pathlib import Path
from bioreactor_edge.journal import Journal
from bioreactor_edge.models import NewReading

async def main(directory, count):
    journal = await Journal.open(Path(directory), budget_bytes=1 << 40)
    start = 1_800_000_000_000
    batch = []
    for i in range(count):
        second, sensor = divmod(i, 45)
        batch.append(NewReading(start + second * 1000, "bus1", f"bus1-s{sensor:02d}", "ph",
                                7.0 + (i % 1000) / 10000, "pH", "good"))
        if len(batch) == 20000:
            await journal.append(batch)
            batch = []
    await journal.append(batch)
    await journal.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def ceiling(agent: AgentProcess) -> float:
    headers = {"Authorization": f"Bearer {agent.token}"}
    start = time.perf_counter()
    after = 0
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                f"{agent.url}/api/v1/readings",
                params={"after": after, "limit": 10000},
                headers=headers,
            ) as response:
                body = await response.read()
            tail = body.rfind(b'"seq": ')
            if tail < 0:
                break
            after = int(body[tail + 7 : body.index(b",", tail)])
            if b'"more": false' in body:
                break
    return time.perf_counter() - start


async def drain(agent: AgentProcess, out: Path) -> tuple[float, int]:
    async with aiohttp.ClientSession() as session:
        client = BioreactorClient("127.0.0.1", agent.port, agent.token, session, request_timeout=60)
        agent_id = (await client.info()).agent_id
        delivery = Delivery(client, agent_id, out / "archive", out / "cursor.json", run_blocking)
        await delivery.recover()
        start = time.perf_counter()
        delivered = 0
        while True:
            page = await delivery.pull()
            delivered += len(page.readings)
            if not page.more:
                break
        return time.perf_counter() - start, delivered


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edge-python", required=True)
    parser.add_argument("--readings", type=int, default=TARGET_READINGS)
    parser.add_argument("--dir", type=Path, default=REPO / ".bench-tmp")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        subprocess.run(
            [
                args.edge_python,
                "-c",
                PREFILL,
                str(work / "agent" / "agent-0" / "journal"),
                str(args.readings),
            ],
            check=True,
        )
        print(f"prefilled {args.readings:,} readings in {time.perf_counter() - started:.1f} s")
        agent = AgentProcess(args.edge_python, work / "agent", rate_hz=0.01, sensors=1)
        agent.start()
        try:
            agent.wait_ready(timeout_s=300)
            fetch_s = asyncio.run(ceiling(agent))
            drain_s, delivered = asyncio.run(drain(agent, work / "consumer"))
        finally:
            agent.stop()
    rate = delivered / drain_s
    projected = TARGET_READINGS / rate
    print(f"{'readings drained':<46} {delivered:>12,}")
    print(f"{'HTTP fetch of every page (ceiling)':<46} {fetch_s:>11.1f} s")
    print(
        f"{'drain: pull + parse + archive + cursor + ack':<46} {drain_s:>11.1f} s  ({rate:,.0f}/s)"
    )
    print(f"{'ratio ceiling / drain (1.0 = transport bound)':<46} {fetch_s / drain_s:>12.2f}")
    print(
        f"{'projected 3.9 M backlog':<46} {projected:>11.1f} s  "
        f"(target < {TARGET_SECONDS:.0f} s: {projected / TARGET_SECONDS:.2f} of it)"
    )


if __name__ == "__main__":
    main()
