"""Exactly-once delivery of one agent's readings: pull, archive, lineage, then ack.

Fault model: a crash, a failed write or a cancelled task at any point of a step,
and a page that comes from the wrong agent. Every storage step starts from the
durable state on disk, not from memory:

1. pull the page after the current epoch's high-water mark from the agent and
   refuse it unless it names this entry's agent;
2. in one executor job: load the lineage; roll back an append it still records
   as pending; keep only readings above their epoch's mark; cut torn last lines;
   record the files' sizes (`pending`); append and fsync; save the lineage with
   the new mark (atomic replace);
3. acknowledge the mark to the agent;
4. hand the newly archived actuation events to `on_actuations` (Home Assistant fires
   them on its bus for the logbook): after the commit, so a crash in between loses
   only that notice, never the archived event.

A failure anywhere in 2 leaves the lineage file in one of three states (before,
pending, after) and the next step's start rolls the archive back to match, so a
reading is never archived twice and never acknowledged before it is durable.
The job is shielded from cancellation and holds the agent's lock until it has
finished, so a reload's new pipeline starts only after it. No Home Assistant
imports: the fault harness runs this in a light subprocess.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from ..api import (
    QUALITY_UNSYNCED,
    Ancestor,
    BioreactorRequestError,
    BioreactorWrongAgentError,
    Reading,
    ReadingsPage,
)
from ..const import LIVE_WINDOW
from . import archive, lineage
from .lineage import Lineage

_LOGGER = logging.getLogger(__name__)
PAGE_SIZE = 10_000

RunBlocking = Callable[..., Awaitable[Any]]
# Told the epoch and the actuation events of each archived page, once each.
OnActuations = Callable[[str, tuple[Reading, ...]], None]


class ReadingsSource(Protocol):
    async def readings(self, after: int, limit: int = ...) -> ReadingsPage: ...
    async def ack(self, epoch: str, seq: int) -> int: ...


class StorageError(Exception):
    """Archiving or saving the lineage failed (disk full, I/O error); retried later."""


@dataclass(frozen=True, slots=True)
class Position:
    """The agent's current epoch and how far it is archived."""

    epoch: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """One pulled page: its newly archived readings and what is left on the agent."""

    epoch: str
    readings: tuple[Reading, ...]
    remaining: int
    more: bool


@dataclass(frozen=True, slots=True)
class Stored:
    lineage: Lineage
    readings: tuple[Reading, ...]


def late_hours(readings: tuple[Reading, ...], cutoff: datetime) -> frozenset[str]:
    """The "reactor/YYYY-MM-DDTHH" hours of readings older than `cutoff` (an outage
    backlog), except readings whose clock was not synchronized (their hour is unknown)."""
    limit = cutoff.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return frozenset(
        f"{r.reactor}/{r.time[:13]}"
        for r in readings
        if r.time < limit and r.quality != QUALITY_UNSYNCED and r.event is None
    )


def recover(lineage_path: Path, agent_id: str, agent_dir: Path) -> Lineage:
    """The last durable state: the lineage, with an append still pending rolled back."""
    current = lineage.load(lineage_path, agent_id, agent_dir)
    if current.pending:
        _LOGGER.warning(
            "rolling back an unfinished archive append (%d files)", len(current.pending)
        )
        archive.rollback(agent_dir, current.pending)
        current = current.settled()
        lineage.save(lineage_path, current)
    return current


def store(
    agent_dir: Path,
    lineage_path: Path,
    agent_id: str,
    page: ReadingsPage,
    late_cutoff: datetime,
) -> Stored:
    """Step 2: archives the readings not archived yet, exactly once. Returns them."""
    durable = recover(lineage_path, agent_id, agent_dir)
    epoch = page.epoch
    mark = durable.high_water(epoch, page.lineage)
    fresh = tuple(r for r in page.readings if r.seq > mark)
    if not fresh:
        return Stored(durable, ())
    plan = archive.plan_append(agent_dir, agent_id, epoch, fresh)
    sizes = archive.repair_tails(agent_dir, plan.keys())
    lineage.save(lineage_path, replace(durable, current=epoch, pending=sizes))
    archive.append(plan)
    done = durable.advanced(epoch, fresh[-1].seq, late_hours(fresh, late_cutoff))
    lineage.save(lineage_path, done)
    return Stored(done, fresh)


def forget_hours(
    lineage_path: Path, agent_id: str, agent_dir: Path, hours: frozenset[str]
) -> Lineage:
    """Marks hours as imported into statistics."""
    durable = recover(lineage_path, agent_id, agent_dir)
    done = replace(durable, hours=durable.hours - hours)
    lineage.save(lineage_path, done)
    return done


class Delivery:
    """The pipeline for one agent; `run_blocking(fn, *args)` runs file work off the loop.

    `lock` is shared by every pipeline of the same agent (across reloads)."""

    def __init__(
        self,
        source: ReadingsSource,
        agent_id: str,
        agent_dir: Path,
        lineage_path: Path,
        run_blocking: RunBlocking,
        *,
        lock: asyncio.Lock | None = None,
        page_size: int = PAGE_SIZE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        live_window: timedelta = LIVE_WINDOW,
        on_actuations: OnActuations | None = None,
    ) -> None:
        self._source = source
        self._on_actuations = on_actuations
        self.agent_id = agent_id
        self.agent_dir = agent_dir
        self._lineage_path = lineage_path
        self._run_blocking = run_blocking
        self._lock = lock or asyncio.Lock()
        self._page_size = page_size
        self._now = now
        self._live_window = live_window
        self._lineage = Lineage(agent_id)
        # The current epoch's inherited ancestors, as its last page said.
        self._ancestors: tuple[Ancestor, ...] = ()
        self._acked: tuple[str, int] | None = None
        self.remaining = 0
        self.delivered_total = 0
        # Newest reading time archived by this process, and whether the agent had no more.
        self.delivered_through: datetime | None = None
        self.caught_up = False

    @property
    def lineage(self) -> Lineage:
        return self._lineage

    @property
    def position(self) -> Position:
        epoch = self._lineage.current
        return Position(epoch, self._lineage.high_water(epoch, self._ancestors) if epoch else 0)

    async def _blocking(self, job: Callable[..., Any], *args: Any) -> Any:
        """Runs a storage job; a cancelled caller still waits for it (the thread cannot be
        stopped) so the lock is never released while the job is writing."""
        future = asyncio.ensure_future(self._run_blocking(job, *args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise
        except OSError as err:
            raise StorageError(f"archive or lineage write failed: {err}") from err

    async def recover(self) -> None:
        """Loads the lineage and rolls back an append a crash or failure interrupted."""
        async with self._lock:
            self._lineage = await self._blocking(
                recover, self._lineage_path, self.agent_id, self.agent_dir
            )

    async def forget_hours(self, hours: frozenset[str]) -> None:
        async with self._lock:
            self._lineage = await self._blocking(
                forget_hours, self._lineage_path, self.agent_id, self.agent_dir, hours
            )

    async def _page(self, after: int) -> ReadingsPage:
        page = await self._source.readings(after, self._page_size)
        if page.agent_id != self.agent_id:
            # Nothing of it is archived or acknowledged.
            raise BioreactorWrongAgentError(self.agent_id, page.agent_id)
        return page

    async def pull(self) -> Delivered:
        """Archives the next page and acknowledges it; raises BioreactorError or StorageError."""
        async with self._lock:
            return await self._pull()

    async def _pull(self) -> Delivered:
        guess = self._lineage.current
        after = self._lineage.high_water(guess, self._ancestors) if guess else 0
        page = await self._page(after)
        mark = self._lineage.high_water(page.epoch, page.lineage)
        if page.epoch != guess or mark != after:
            if guess is not None and page.epoch != guess:
                _LOGGER.warning(
                    "agent %s serves journal epoch %s (was %s); delivering it after seq %d",
                    self.agent_id,
                    page.epoch,
                    guess,
                    mark,
                )
            self._lineage = replace(self._lineage, current=page.epoch)
            self._ancestors = page.lineage
            if mark != after:
                page = await self._page(mark)
                if page.epoch != self._lineage.current:
                    return Delivered(page.epoch, (), page.newest_seq, True)  # changed again
        fresh: tuple[Reading, ...] = ()
        if any(r.seq > self._lineage.high_water(page.epoch, page.lineage) for r in page.readings):
            stored: Stored = await self._blocking(
                store,
                self.agent_dir,
                self._lineage_path,
                self.agent_id,
                page,
                self._now() - self._live_window,
            )
            self._lineage, fresh = stored.lineage, stored.readings
        mark = self._lineage.high_water(page.epoch, page.lineage)
        if page.newest_seq < mark:
            _LOGGER.warning(
                "agent %s's epoch %s ends at seq %d, below the %d already archived",
                self.agent_id,
                page.epoch,
                page.newest_seq,
                mark,
            )
        await self._acknowledge(page.epoch, min(mark, page.newest_seq))
        self.remaining = max(0, page.newest_seq - mark)
        self.caught_up = not page.more
        self.delivered_total += len(fresh)
        events = tuple(r for r in fresh if r.event is not None)
        if events and self._on_actuations is not None:
            self._on_actuations(page.epoch, events)
        if fresh:
            newest = datetime.fromisoformat(fresh[-1].time)
            if self.delivered_through is None or newest > self.delivered_through:
                self.delivered_through = newest
        return Delivered(page.epoch, fresh, self.remaining, page.more)

    async def _acknowledge(self, epoch: str, seq: int) -> None:
        if seq == 0 or (epoch, seq) == self._acked:
            return
        try:
            await self._source.ack(epoch, seq)
        except BioreactorRequestError as err:
            # 409: the agent moved to a new epoch meanwhile; the next pull notices.
            _LOGGER.warning("acknowledgement of %s refused: %s", (epoch, seq), err)
            return
        self._acked = (epoch, seq)

    async def drain(self, max_pages: int) -> int:
        """Pulls pages until the agent has no more (at most `max_pages`); returns the
        number of readings archived. Raises BioreactorError or StorageError."""
        archived = 0
        for _ in range(max_pages):
            delivered = await self.pull()
            archived += len(delivered.readings)
            if not delivered.more:
                break
        return archived
