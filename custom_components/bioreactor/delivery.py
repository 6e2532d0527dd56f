"""Exactly-once delivery of one agent's readings: pull, archive, cursor, then ack.

Each step is durable before the next begins:

1. pull the page after the cursor (same epoch) from the agent;
2. record the archive files' current sizes in the cursor (`pending`);
3. append the page to the archive and fsync it;
4. move the cursor past the page (clearing `pending`), atomically;
5. acknowledge the cursor's seq to the agent.

A crash between 2 and 4 leaves `pending`, and start-up truncates the files
back, so the page is written again exactly once; a crash after 4 skips
readings at or below the cursor; an unacknowledged page is simply
acknowledged later. No Home Assistant imports: the fault harness runs this in
a light subprocess.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import archive, cursor
from .api import BioreactorRequestError, Reading, ReadingsPage

_LOGGER = logging.getLogger(__name__)
PAGE_SIZE = 10_000

RunBlocking = Callable[..., Awaitable[Any]]


class ReadingsSource(Protocol):
    async def readings(self, after: int, limit: int = ...) -> ReadingsPage: ...
    async def ack(self, epoch: str, seq: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Delivered:
    """One archived page: its new readings and what is left on the agent."""

    epoch: str
    readings: tuple[Reading, ...]
    remaining: int
    more: bool


class Delivery:
    """The pipeline for one agent; `run_blocking(fn, *args)` runs file work off the loop."""

    def __init__(
        self,
        source: ReadingsSource,
        agent_dir: Path,
        cursor_path: Path,
        run_blocking: RunBlocking,
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._source = source
        self._agent_dir = agent_dir
        self._cursor_path = cursor_path
        self._run_blocking = run_blocking
        self._page_size = page_size
        self._cursor = cursor.Cursor()
        self._acked: tuple[str | None, int] = (None, 0)
        self.remaining = 0

    @property
    def position(self) -> cursor.Cursor:
        return self._cursor

    async def recover(self) -> None:
        """Loads the cursor and undoes an append a crash interrupted."""
        self._cursor = await self._run_blocking(_recover, self._cursor_path)

    async def pull(self) -> Delivered:
        """Archives the next page and acknowledges it; raises the client's errors."""
        current = self._cursor
        page = await self._source.readings(current.seq, self._page_size)
        if page.epoch != current.epoch:
            if current.epoch is not None:
                _LOGGER.warning(
                    "agent %s started a new journal epoch %s (was %s); delivering it from seq 1",
                    page.agent_id,
                    page.epoch,
                    current.epoch,
                )
            current = cursor.Cursor(epoch=page.epoch, seq=0)
            if self._cursor.seq:
                # The page was asked for after the old epoch's seq: ask again from the start.
                page = await self._source.readings(0, self._page_size)
            if page.epoch != current.epoch:
                return Delivered(page.epoch, (), page.newest_seq, True)  # changed again
        fresh = tuple(r for r in page.readings if r.seq > current.seq)
        if fresh:
            self._cursor = await self._run_blocking(
                _store, self._agent_dir, self._cursor_path, current, fresh
            )
        elif current != self._cursor:
            await self._run_blocking(cursor.save, self._cursor_path, current)
            self._cursor = current
        await self._acknowledge()
        self.remaining = max(0, page.newest_seq - self._cursor.seq)
        return Delivered(page.epoch, fresh, self.remaining, page.more)

    async def _acknowledge(self) -> None:
        position = (self._cursor.epoch, self._cursor.seq)
        if self._cursor.epoch is None or self._cursor.seq == 0 or position == self._acked:
            return
        try:
            await self._source.ack(self._cursor.epoch, self._cursor.seq)
        except BioreactorRequestError as err:
            # 409: the agent moved to a new epoch meanwhile; the next pull notices.
            _LOGGER.warning("acknowledgement of %s refused: %s", position, err)
            return
        self._acked = position


def _recover(cursor_path: Path) -> cursor.Cursor:
    position = cursor.load(cursor_path)
    if position.pending:
        _LOGGER.warning("undoing an interrupted archive append (%d files)", len(position.pending))
        archive.truncate(position.pending)
        position = cursor.Cursor(epoch=position.epoch, seq=position.seq)
        cursor.save(cursor_path, position)
    return position


def _store(
    agent_dir: Path, cursor_path: Path, current: cursor.Cursor, readings: tuple[Reading, ...]
) -> cursor.Cursor:
    """Steps 2-4: intent, append, commit. Returns the new cursor."""
    assert current.epoch is not None
    plan = archive.plan_append(agent_dir, current.epoch, readings)
    intent = cursor.Cursor(current.epoch, current.seq, archive.current_sizes(plan))
    cursor.save(cursor_path, intent)
    archive.append(plan)
    done = cursor.Cursor(epoch=current.epoch, seq=readings[-1].seq)
    cursor.save(cursor_path, done)
    return done
