"""A light consumer process: the integration's real delivery pipeline without Home Assistant.

    python consumer.py HOST PORT TOKEN OUT_DIR PAGE_SIZE [--until-caught-up] [--consumer ID]

Loops pulling pages into OUT_DIR/archive with the cursor in OUT_DIR/cursor.json, as
the agent's default consumer or as consumer ID; the fault harness SIGKILLs it at
random moments.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.light_pipeline import install, run_blocking

install()
from custom_components.bioreactor.api import BioreactorClient, BioreactorError  # noqa: E402
from custom_components.bioreactor.delivery.pipeline import Delivery, StorageError  # noqa: E402


async def consume(
    host: str,
    port: int,
    token: str,
    out_dir: Path,
    page_size: int,
    until_caught_up: bool,
    consumer: str | None,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = BioreactorClient(host, port, token, session, consumer=consumer, request_timeout=5)
        while True:  # pairing: learn the agent's id once
            try:
                agent_id = (await client.info()).agent_id
                break
            except BioreactorError:
                await asyncio.sleep(0.05)
        delivery = Delivery(
            client,
            agent_id,
            out_dir / "archive",
            out_dir / "cursor.json",
            run_blocking,
            page_size=page_size,
        )
        await delivery.recover()
        while True:
            try:
                delivered = await delivery.pull()
            except (BioreactorError, StorageError):
                await asyncio.sleep(0.05)
                continue
            if until_caught_up and not delivered.more and delivered.remaining == 0:
                return
            if not delivered.readings:
                await asyncio.sleep(0.02)


if __name__ == "__main__":
    host, port, token, out, page = sys.argv[1:6]
    consumer_id = sys.argv[sys.argv.index("--consumer") + 1] if "--consumer" in sys.argv else None
    asyncio.run(
        consume(
            host,
            int(port),
            token,
            Path(out),
            int(page),
            "--until-caught-up" in sys.argv,
            consumer_id,
        )
    )
