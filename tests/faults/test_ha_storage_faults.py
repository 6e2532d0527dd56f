"""Disk full and I/O errors on Home Assistant's side: the archive and the lineage file
fail at random writes, fsyncs and renames while a real agent is drained; a real tiny
filesystem fills up under the archive. Nothing is acknowledged before it is durable,
and nothing is archived twice."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.agent_process import AgentProcess
from tests.support.light_pipeline import install, run_blocking
from tests.support.os_faults import FaultyOs

from .conftest import cycles
from .harness import drain_and_stop, judge_and_record

install()
from custom_components.bioreactor.api import BioreactorClient  # noqa: E402
from custom_components.bioreactor.delivery import files  # noqa: E402
from custom_components.bioreactor.delivery.pipeline import Delivery, StorageError  # noqa: E402


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def pipeline(agent: AgentProcess, session: aiohttp.ClientSession, out: Path) -> Delivery:
    client = BioreactorClient("127.0.0.1", agent.port, agent.token, session)
    agent_id = (await client.info()).agent_id
    delivery = Delivery(
        client, agent_id, out / "archive", out / "cursor.json", run_blocking, page_size=40
    )
    await delivery.recover()
    return delivery


async def test_disk_full_and_io_errors_on_archive_and_lineage(
    agent: AgentProcess,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(17)
    out = tmp_path / "consumer"
    delivery = await pipeline(agent, session, out)
    count = cycles(200)
    failed = 0
    for _ in range(count):
        # A step issues ~10 mutating calls (lineage, tails, appends, lineage): fail one.
        faulty = FaultyOs(rng.randrange(1, 14), rng.choice((errno.ENOSPC, errno.EIO)))
        monkeypatch.setattr(files, "os", faulty)
        try:
            await delivery.pull()
        except StorageError:
            failed += 1
        finally:
            monkeypatch.setattr(files, "os", os)
        await asyncio.sleep(0.05 + rng.random() * 0.05)  # a few new readings per step
    await asyncio.to_thread(drain_and_stop, agent, out)

    verdict = judge_and_record(
        "HA archive/lineage: ENOSPC + EIO at random writes", count, agent, out / "archive"
    )
    assert failed >= count // 2, failed
    assert verdict.lost == 0
    assert verdict.duplicated == 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (the tests run as root, as on CI)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_archive_on_a_filesystem_that_fills_up(
    agent: AgentProcess, session: aiohttp.ClientSession, tiny_fs: Path
) -> None:
    delivery = await pipeline(agent, session, tiny_fs)
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * (200 * 1024))
    full = 0
    causes: list[BaseException | None] = []
    for _ in range(400):
        try:
            await delivery.pull()
        except StorageError as err:
            causes.append(err.__cause__)
            full += 1
            if full >= 20:
                break
        await asyncio.sleep(0.02)
    assert full >= 20, "the tiny filesystem never filled up"
    assert all(isinstance(c, OSError) and c.errno == errno.ENOSPC for c in causes), causes
    acked = agent.get("/api/v1/status")["journal"]["acked_seq"]
    assert acked == delivery.position.seq  # nothing acknowledged beyond the archive
    filler.unlink()
    await asyncio.to_thread(drain_and_stop, agent, tiny_fs)

    verdict = judge_and_record(
        "HA archive on a tiny filesystem that fills up", full, agent, tiny_fs / "archive"
    )
    assert verdict.lost == 0
    assert verdict.duplicated == 0
