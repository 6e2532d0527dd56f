"""The journal: every reading, durable before it counts as taken.

SQLite in WAL mode with `synchronous=FULL`: a commit has reached the disk when
it returns. All SQLite work runs in one dedicated thread, never on the event
loop. Appends that arrive while a commit is in flight are committed together in
the next transaction (group commit), so one transaction carries a whole sampling
tick however many sensor tasks produced it.

A reading's identity is (agent id, epoch, seq). `seq` comes from an
AUTOINCREMENT key, so it is never reused within an epoch even after deletions;
the epoch is created with the database and changes whenever the journal has to
start anew. Acknowledgements persist a watermark before anything may be
deleted; retention removes acknowledged readings by age and disk budget, and
only when unacknowledged readings alone exceed the budget does it drop the
oldest of them, counting every drop (persisted, reported by the API).

A full disk never corrupts anything: a failed commit is rolled back, its
readings wait in a bounded in-memory backlog, the journal reports itself
unwritable and retries on every later append and retention run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .journal_recovery import move_aside, quick_check_problem, salvage, scan_wal
from .models import NewReading, Reading

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

DB_NAME = "journal.db"
# Readings held in memory while the disk is full; beyond it the oldest are dropped (counted).
BACKLOG_CAP = 100_000
# Retention deletes in chunks so one run never holds the writer for long.
DELETE_CHUNK = 20_000
# Retention frees down to this share of the budget, so it does not run on every append.
BUDGET_LOW_WATER = 0.95
# A budget check follows every this many commits (cheap: two PRAGMAs).
BUDGET_CHECK_EVERY = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    reactor TEXT NOT NULL, sensor TEXT NOT NULL, quantity TEXT NOT NULL, unit TEXT NOT NULL,
    UNIQUE (reactor, sensor, quantity, unit)
);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    series INTEGER NOT NULL REFERENCES series (id),
    value REAL NOT NULL,
    quality TEXT NOT NULL
);
"""
_READ_AFTER = (
    "SELECT r.seq, r.time_ms, s.reactor, s.sensor, s.quantity, r.value, s.unit, r.quality "
    "FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)


class JournalError(Exception):
    """A request the journal cannot honour."""


class EpochMismatch(JournalError):
    """An acknowledgement for another epoch than the current one."""


class AckBeyondNewest(JournalError):
    """An acknowledgement of a sequence number that does not exist yet."""


@dataclass(frozen=True, slots=True)
class JournalStats:
    epoch: str
    newest_seq: int
    acked_seq: int
    pending: int  # readings not yet acknowledged, including any waiting for disk space
    bytes: int  # database + WAL file sizes
    budget_bytes: int
    retention_days: float
    dropped: int  # readings dropped, ever, because the budget or backlog overflowed
    writable: bool


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What start-up found and did; `message` is empty when all was well."""

    discarded_frames: int = 0
    discarded_bytes: int = 0
    new_epoch: bool = False
    salvaged_rows: int = 0
    message: str = ""


def _is_disk_problem(err: BaseException) -> bool:
    """Out of space or an I/O failure: park and retry rather than fail."""
    if isinstance(err, OSError):
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return isinstance(err, sqlite3.OperationalError) and (
        code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
        or (code is not None and code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR))
        or "disk" in str(err)
    )


class Journal:
    """The agent's durable store of readings (open with `await Journal.open(...)`)."""

    epoch: str
    recovery: RecoveryReport

    def __init__(
        self, directory: Path, retention_s: float, budget_bytes: int, clock: Callable[[], float]
    ) -> None:
        self._dir = directory
        self._path = directory / DB_NAME
        self._retention_s = retention_s
        self._budget = budget_bytes
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._conn: sqlite3.Connection | None = None
        self._series: dict[tuple[str, str, str, str], int] = {}
        self._newest = 0
        self._oldest = 1  # smallest seq still stored (newest + 1 when empty)
        self._acked = 0
        self._dropped = 0
        self._dropped_unsaved = False  # counted in memory while the disk was full
        self._bytes = 0
        self._writable = True
        self._commits = 0
        # Group commit: batches waiting for the next transaction.
        self._waiting: list[tuple[list[NewReading], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Readings that could not be written (disk full), oldest first.
        self._backlog: deque[NewReading] = deque()
        self._closed = False

    # -- opening and recovery -------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: Path,
        *,
        retention_s: float = 30 * 86400,
        budget_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.time,
    ) -> Journal:
        journal = cls(directory, retention_s, budget_bytes, clock)
        try:
            await journal._run(journal._open_sync)
        except BaseException:
            journal._executor.shutdown(wait=True)
            raise
        return journal

    def _open_sync(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        existed = self._path.exists()
        wal = scan_wal(Path(f"{self._path}-wal"))
        problems = [wal.problem] if wal.problem else []
        salvaged = 0
        new_epoch = not existed
        corrupt = ""
        evidence: Path | None = None
        if existed:
            try:
                self._connect()
                corrupt = self._check_existing()
            except sqlite3.DatabaseError as err:
                corrupt = str(err)
            if corrupt:
                self._close_conn()
                stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
                evidence = move_aside(self._path, stamp)
                problems.append(f"database corrupt ({corrupt}); moved aside to {evidence.name}")
                new_epoch = True
        if new_epoch:
            self._connect()
            self._create()
            if evidence is not None:
                scratch = self._dir / "salvage-scratch.db"
                for batch in salvage(evidence, scratch):
                    self._insert(batch)
                    salvaged += len(batch)
                problems.append(f"salvaged {salvaged} unacknowledged readings into a new epoch")
        self._load_state()
        self.recovery = RecoveryReport(
            discarded_frames=wal.discarded_frames,
            discarded_bytes=wal.discarded_bytes,
            new_epoch=new_epoch,
            salvaged_rows=salvaged,
            message="; ".join(problems),
        )

    def _connect(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        with contextlib.suppress(FileNotFoundError):
            # Owner-only: the journal holds the lab's raw data.
            self._path.chmod(0o600)

    def _check_existing(self) -> str:
        """Empty if the existing database is sound and ours, else what is wrong."""
        conn = self._db
        problem = quick_check_problem(conn)
        if problem:
            return problem
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not {"meta", "state", "series", "readings"} <= tables:
            return "tables missing"
        if conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone() is None:
            return "epoch missing"
        return ""

    def _create(self) -> None:
        conn = self._db
        conn.executescript(_SCHEMA)
        with self._transaction():
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),)
            )
            conn.execute("INSERT INTO state (id, acked_seq, dropped) VALUES (1, 0, 0)")

    def _load_state(self) -> None:
        conn = self._db
        self.epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        self._acked, self._dropped = conn.execute(
            "SELECT acked_seq, dropped FROM state WHERE id = 1"
        ).fetchone()
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
        self._newest = int(row[0]) if row else 0
        oldest = conn.execute("SELECT MIN(seq) FROM readings").fetchone()[0]
        self._oldest = int(oldest) if oldest is not None else self._newest + 1
        self._series = {
            (reactor, sensor, quantity, unit): series_id
            for series_id, reactor, sensor, quantity, unit in conn.execute(
                "SELECT id, reactor, sensor, quantity, unit FROM series"
            )
        }
        self._measure()

    # -- plumbing --------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    async def _run(self, job: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise JournalError("the journal is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, job, *args)

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _measure(self) -> None:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                total += Path(f"{self._path}{suffix}").stat().st_size
        self._bytes = total

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # -- appending -------------------------------------------------------------

    async def append(self, readings: Sequence[NewReading]) -> None:
        """Returns once `readings` are durable, or parked in the backlog when the disk is full."""
        if not readings:
            return
        if self._closed:
            raise JournalError("the journal is closed")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((list(readings), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        # Shielded: a cancelled caller must not cancel the commit of others' readings.
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._waiting:
            batches, self._waiting = self._waiting, []
            readings = [r for batch, _ in batches for r in batch]
            failure: BaseException | None = None
            try:
                await self._run(self._commit, readings)
            except Exception as err:  # handed to every waiting caller instead
                failure = err
            for _, done in batches:
                if done.done():
                    continue
                # A failed commit must never look durable to the callers it carried.
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)

    def _commit(self, readings: list[NewReading]) -> None:
        """Writes the backlog, then `readings`; parks them in the backlog on a disk problem."""
        if self._backlog and not self._write_backlog():
            self._park(readings)
            return
        try:
            self._insert(readings)
        except (sqlite3.Error, OSError) as err:
            if not _is_disk_problem(err):
                raise
            self._disk_failed(err)
            self._park(readings)
            return
        self._commits += 1
        if self._commits % BUDGET_CHECK_EVERY == 0:
            self._enforce_budget()
        self._measure()

    def _insert(self, readings: Sequence[NewReading]) -> None:
        try:
            with self._transaction() as conn:
                # The cache hit is inlined: this loop is the journal's hottest Python code.
                cache = self._series
                rows = [
                    (
                        r.time_ms,
                        cache.get((r.reactor, r.sensor, r.quantity, r.unit))
                        or self._series_id(conn, r),
                        r.value,
                        r.quality,
                    )
                    for r in readings
                ]
                conn.executemany(
                    "INSERT INTO readings (time_ms, series, value, quality) VALUES (?, ?, ?, ?)",
                    rows,
                )
                if self._dropped_unsaved:
                    conn.execute("UPDATE state SET dropped = ? WHERE id = 1", (self._dropped,))
                newest = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'readings'"
                ).fetchone()[0]
        except BaseException:
            # Series rows added in the rolled-back transaction are gone: forget their ids.
            self._series.clear()
            raise
        self._dropped_unsaved = False
        self._newest = int(newest)
        if not self._writable:
            _LOGGER.warning("journal writable again")
        self._writable = True

    def _series_id(self, conn: sqlite3.Connection, reading: NewReading) -> int:
        key = (reading.reactor, reading.sensor, reading.quantity, reading.unit)
        series_id = self._series.get(key)
        if series_id is None:
            # The cache may lag the database (cleared after a failure), so never assume absence.
            conn.execute(
                "INSERT OR IGNORE INTO series (reactor, sensor, quantity, unit) "
                "VALUES (?, ?, ?, ?)",
                key,
            )
            series_id = int(
                conn.execute(
                    "SELECT id FROM series WHERE reactor = ? AND sensor = ? AND quantity = ? "
                    "AND unit = ?",
                    key,
                ).fetchone()[0]
            )
            self._series[key] = series_id
        return series_id

    def _disk_failed(self, err: BaseException) -> None:
        if self._writable:
            _LOGGER.error("journal cannot write (%s); keeping readings in memory", err)
        self._writable = False
        # After an I/O error SQLite may need a fresh connection (re-opened on the next retry).
        self._close_conn()

    def _park(self, readings: list[NewReading]) -> None:
        self._backlog.extend(readings)
        overflow = len(self._backlog) - BACKLOG_CAP
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self._count_dropped(overflow)

    def _count_dropped(self, count: int) -> None:
        self._dropped += count
        self._dropped_unsaved = True
        _LOGGER.error("journal dropped %d readings (%d in all)", count, self._dropped)

    def _write_backlog(self) -> bool:
        """Tries to write the parked readings; True when the backlog is empty."""
        if self._conn is None:
            try:
                self._connect()
            except sqlite3.Error:
                return False
        parked = list(self._backlog)
        try:
            for start in range(0, len(parked), DELETE_CHUNK):
                self._insert(parked[start : start + DELETE_CHUNK])
                for _ in range(min(DELETE_CHUNK, len(parked) - start)):
                    self._backlog.popleft()
        except (sqlite3.Error, OSError) as err:
            if not _is_disk_problem(err):
                raise
            self._disk_failed(err)
            return False
        self._measure()
        return True

    # -- reading and acknowledging ---------------------------------------------

    async def read_after(self, after: int, limit: int) -> tuple[list[Reading], bool]:
        """Durable readings with seq > `after`, ascending, at most `limit`; and if more exist."""
        rows = await self._run(self._read_after, after, limit)
        more = len(rows) > limit
        return [Reading(*row) for row in rows[:limit]], more

    def _read_after(self, after: int, limit: int) -> list[Any]:
        if self._conn is None:
            self._connect()
        return self._db.execute(_READ_AFTER, (after, limit + 1)).fetchall()

    async def ack(self, epoch: str, seq: int) -> int:
        """Persists the watermark `seq`; returns the watermark (acks never move it back)."""
        if epoch != self.epoch:
            raise EpochMismatch(f"epoch {epoch!r} is not the current epoch {self.epoch!r}")
        if seq > self._newest:
            raise AckBeyondNewest(f"seq {seq} is beyond the newest reading {self._newest}")
        if seq <= self._acked:
            return self._acked
        await self._run(self._save_ack, seq)
        return self._acked

    def _save_ack(self, seq: int) -> None:
        if seq <= self._acked:
            return
        if self._conn is None:
            self._connect()
        with self._transaction() as conn:
            conn.execute("UPDATE state SET acked_seq = ? WHERE id = 1", (seq,))
        self._acked = seq

    def stats(self) -> JournalStats:
        stored_unacked = self._newest - max(self._acked, self._oldest - 1)
        return JournalStats(
            epoch=self.epoch,
            newest_seq=self._newest,
            acked_seq=self._acked,
            pending=stored_unacked + len(self._backlog),
            bytes=self._bytes,
            budget_bytes=self._budget,
            retention_days=self._retention_s / 86400,
            dropped=self._dropped,
            writable=self._writable,
        )

    # -- retention -------------------------------------------------------------

    async def enforce_retention(self) -> None:
        """Deletes acknowledged readings past the window or over budget; retries a backlog."""
        await self._run(self._retention)

    def _retention(self) -> None:
        if self._backlog and not self._write_backlog():
            return
        if self._conn is None:
            return
        cutoff_ms = int((self._clock() - self._retention_s) * 1000)
        try:
            while self._delete_chunk(
                "seq IN (SELECT seq FROM readings WHERE seq <= ? AND time_ms < ? "
                "ORDER BY seq LIMIT ?)",
                (self._acked, cutoff_ms, DELETE_CHUNK),
            ):
                pass
            self._enforce_budget()
        except (sqlite3.Error, OSError) as err:
            if not _is_disk_problem(err):
                raise
            self._disk_failed(err)
        self._measure()

    def _used_bytes(self) -> int:
        conn = self._db
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _enforce_budget(self) -> None:
        """Frees pages until the data fits the budget: acknowledged readings first."""
        if self._used_bytes() <= self._budget:
            return
        target = self._budget * BUDGET_LOW_WATER
        while self._used_bytes() > target:
            if self._oldest <= self._acked:
                self._delete_chunk("seq <= ?", (min(self._acked, self._oldest + 999),))
                continue
            if self._oldest > self._newest:
                return  # nothing left to delete: the schema itself is over budget
            last = min(self._newest, self._oldest + 999)
            count = last - self._oldest + 1
            self._count_dropped(count)
            self._delete_chunk("seq <= ?", (last,))

    def _delete_chunk(self, where: str, args: tuple[int, ...]) -> bool:
        """Deletes one chunk of readings; True if anything was deleted."""
        with self._transaction() as conn:
            deleted = conn.execute(f"DELETE FROM readings WHERE {where}", args).rowcount  # noqa: S608
            if self._dropped_unsaved:
                # Same transaction as the deletion: a drop is never lost from the count.
                conn.execute("UPDATE state SET dropped = ? WHERE id = 1", (self._dropped,))
        self._dropped_unsaved = False
        if deleted:
            oldest = self._db.execute("SELECT MIN(seq) FROM readings").fetchone()[0]
            self._oldest = int(oldest) if oldest is not None else self._newest + 1
        return int(deleted) > 0

    # -- closing ---------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._backlog:
            _LOGGER.error("closing with %d readings never written (disk full)", len(self._backlog))
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._close_conn()
