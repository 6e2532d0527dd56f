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

Appending never fails: a commit that fails (full disk, I/O error, a database
locked by another process) is rolled back, its readings wait in a bounded
in-memory backlog, the journal reports itself unwritable and retries on every
later append and retention run; anything that goes wrong after a commit was
durable is logged, never reported to the appender (who would append again).
Every reading that is gone without being acknowledged is counted by cause.

Consumers: the default consumer's watermark is `state.acked_seq`; further
consumers (by id) keep their own, and age-based retention only deletes what the
slowest of them has acknowledged.

Start-up recovery that loses committed readings starts a new epoch that inherits
the surviving readings under their old numbers (journal_lineage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .journal_lineage import (
    Ancestor,
    Floor,
    FloorFile,
    decode_lineage,
    encode_lineage,
    floor_for,
    inherit,
    lost_later_epoch,
)
from .journal_recovery import (
    WalScan,
    move_aside,
    quick_check_problem,
    salvage,
    scan_wal,
    sequence_in_page,
)
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
# Why readings were lost (docs/api.md, `journal.dropped_by_cause`).
DROP_CAUSES = ("budget", "retention", "disk_full", "io_error", "shutdown", "recovery")
DEFAULT_CONSUMER = "default"
MAX_CONSUMERS = 16

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
    quality TEXT NOT NULL,
    event TEXT
);
"""
# Tables added after the first release; created in older journals when they are opened.
_ADDED_TABLES = """
CREATE TABLE IF NOT EXISTS drops (cause TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS consumers (id TEXT PRIMARY KEY, acked_seq INTEGER NOT NULL);
"""
# Journals from before actuation events get the nullable column when they are opened (cheap:
# SQLite only rewrites the schema); their rows read back as measurements.
_EVENT_COLUMN = "ALTER TABLE readings ADD COLUMN event TEXT"
_READ_AFTER = (
    "SELECT r.seq, r.time_ms, s.reactor, s.sensor, s.quantity, r.value, s.unit, r.quality, "
    "r.event "
    "FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)


class JournalError(Exception):
    """A request the journal cannot honour."""


class EpochMismatch(JournalError):
    """An acknowledgement for another epoch than the current one."""


class AckBeyondNewest(JournalError):
    """An acknowledgement of a sequence number that does not exist yet."""


class UnknownConsumer(JournalError):
    """A consumer id that is not registered."""


class TooManyConsumers(JournalError):
    """Registering another consumer would exceed MAX_CONSUMERS."""


class JournalUnavailable(JournalError):
    """The database cannot be read or written right now (full disk, I/O error, locked)."""


@dataclass(frozen=True, slots=True)
class JournalStats:
    epoch: str
    newest_seq: int
    acked_seq: int
    pending: int  # readings not yet acknowledged, including any waiting for disk space
    bytes: int  # database + WAL file sizes
    budget_bytes: int
    retention_days: float
    dropped: int  # readings gone unacknowledged, ever: the sum of dropped_by_cause
    dropped_by_cause: dict[str, int]
    writable: bool
    lineage: tuple[Ancestor, ...]
    # The epoch was started by a recovery that lost readings, and nobody has acknowledged in it.
    new_epoch_unacked: bool


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What start-up found and did; `message` is empty when all was well."""

    discarded_frames: int = 0
    discarded_bytes: int = 0
    new_epoch: bool = False
    salvaged_rows: int = 0
    # Committed readings that are gone and no consumer had acknowledged (dropped: recovery).
    lost_readings: int = 0
    message: str = ""


def _failure_cause(err: BaseException) -> str:
    """The drop cause a failed write stands for: a full disk, or any other I/O trouble."""
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return "disk_full"
    return "io_error"


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
        self._acked = 0  # the default consumer's watermark
        self._consumers: dict[str, int] = {}  # further consumers' watermarks
        self._lineage: tuple[Ancestor, ...] = ()
        self._new_epoch_unacked = False
        self._floor = FloorFile(directory)
        # Drop counters: changed by the journal thread, and by the loop once it is closed.
        self._drops_lock = threading.Lock()
        self._drops = dict.fromkeys(DROP_CAUSES, 0)
        self._drops_unsaved = False
        self._bytes = 0
        self._writable = True
        self._commits = 0
        # Group commit: batches waiting for the next transaction.
        self._waiting: list[tuple[list[NewReading], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Readings that could not be written, oldest first, and why.
        self._backlog: deque[NewReading] = deque()
        self._backlog_cause = "io_error"
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
        floor = self._open_floor()
        problems = [wal.problem] if wal.problem else []
        corrupt = ""
        if existed:
            try:
                self._connect()
                corrupt = self._check_existing()
            except sqlite3.DatabaseError as err:
                corrupt = str(err)
        salvaged = lost = 0
        new_epoch = not existed or bool(corrupt)
        if corrupt:
            self._close_conn()
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
            evidence = move_aside(self._path, stamp)
            problems.append(f"database corrupt ({corrupt}); moved aside to {evidence.name}")
            self._connect()
            self._create()
            self._load_state(floor)
            salvaged, lost = self._salvage(evidence, floor, self._counter_in_lost_frames(wal))
            problems.append(
                f"salvaged {salvaged} unacknowledged readings into a new epoch; {lost} are gone"
            )
        elif not existed:
            self._connect()
            self._create()
        else:
            self._db.executescript(_ADDED_TABLES)
            self._add_event_column()
            self._load_state(floor)
            gone, lost = self._lost_in_recovery(wal, floor)
            lost_epoch = lost_later_epoch(floor, self.epoch, self._lineage)
            if gone or lost_epoch:
                new_epoch = True
                old = self.epoch
                self._start_epoch(self._newest, lost, lost_epoch)
                problems.append(
                    f"committed readings were lost ({lost} counted) after seq {self._newest} "
                    f"of epoch {old}"
                    + (f" and the start of epoch {lost_epoch}" if lost_epoch else "")
                    + "; continuing in a new epoch"
                )
        # A fresh database (deleted on purpose) does not carry the old one's drop counts.
        self._load_state(floor if existed else None)
        with contextlib.suppress(OSError):  # retried before anything is served
            self._floor.save(self._floor_now())
        self.recovery = RecoveryReport(
            discarded_frames=wal.discarded_frames,
            discarded_bytes=wal.discarded_bytes,
            new_epoch=new_epoch,
            salvaged_rows=salvaged,
            lost_readings=lost,
            message="; ".join(problems),
        )

    def _open_floor(self) -> Floor | None:
        """The recorded served floor; a file that cannot be made (a full disk) is no reason
        to stop: nothing is served until it can be written (503, retried by the consumer)."""
        try:
            return self._floor.open()
        except OSError as err:
            _LOGGER.warning("journal cannot record its served floor yet: %s", err)
            return None

    def _floor_now(self) -> Floor:
        return Floor(self.epoch, self._newest, self._drops["recovery"], self._retain_after())

    def _lost_in_recovery(self, wal: WalScan, floor: Floor | None) -> tuple[bool, int]:
        """Whether recovery lost committed readings, and how many of them no consumer had
        acknowledged (0 where none can be proven): those are counted as dropped.

        Evidence: the served floor above the surviving newest seq, whether it is this epoch's
        or that of a later epoch whose start was lost (whatever removed them), and the readings
        counter in discarded WAL frames of transactions that were committed and followed by
        another one (so they were durable and acknowledged). Readings up to the floor's acked
        seq reached every consumer even if the acknowledgement itself is lost.
        """
        applies = floor_for(floor, self.epoch, self._lineage)
        newest = max(applies.newest_seq if applies else 0, self._counter_in_lost_frames(wal))
        acked = max(self._newest, applies.acked_seq if applies else 0)
        return newest > self._newest or wal.lost_commits, max(0, newest - acked)

    def _counter_in_lost_frames(self, wal: WalScan) -> int:
        """The highest readings counter in WAL frames of lost committed transactions (or 0).

        The `sqlite_sequence` root page comes from this connection's schema, which every
        journal creates in the same order (so a fresh database tells a corrupt one's too).
        """
        if not wal.lost_commits:
            return 0
        row = self._db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_sequence'"
        ).fetchone()
        counters = [
            sequence_in_page(page, "readings") or 0
            for number, page in wal.lost_pages
            if row is not None and number == row[0]
        ]
        return max([0, *counters])

    def _start_epoch(self, through_seq: int, lost: int, lost_epoch: str | None) -> None:
        """A new epoch that inherits this one's readings up to `through_seq` (and names
        `lost_epoch`, a later epoch whose start is gone, as an ancestor too)."""
        lineage = inherit(self._lineage, self.epoch, through_seq, lost_epoch)
        with self._transaction() as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", (secrets.token_hex(8),))
            self._set_meta(conn, "lineage", encode_lineage(lineage))
            self._set_meta(conn, "new_epoch_unacked", "1")
            self._count_dropped("recovery", lost)
            self._save_drops(conn)

    def _salvage(self, evidence: Path, floor: Floor | None, wal_newest: int) -> tuple[int, int]:
        """Copies the readable unacknowledged readings of a corrupt journal, under their old
        seqs, into the fresh database; returns (salvaged, lost). `wal_newest`: the readings
        counter found in lost WAL frames (0 if none)."""
        salvaged = 0
        with salvage(evidence, self._dir / "salvage-scratch.db") as found:
            old_epoch = found.epoch or (floor.epoch if floor is not None else None)
            ancestors = decode_lineage(found.lineage)
            through = found.acked_seq
            for batch in found.readings:
                self._insert_salvaged(batch)
                salvaged += len(batch)
                through = max(through, batch[-1].seq)
            lost_epoch = None
            known = [found.newest_seq or 0, wal_newest]
            if old_epoch is not None:
                applies = floor_for(floor, old_epoch, ancestors)
                known.append(applies.newest_seq if applies else 0)
                lost_epoch = lost_later_epoch(floor, old_epoch, ancestors)
            newest = max(known)
            lost = max(0, newest - found.acked_seq - salvaged)
            through = max(through, newest)
            with self._transaction() as conn:
                conn.execute("UPDATE state SET acked_seq = ? WHERE id = 1", (found.acked_seq,))
                # New readings continue above every number the old epoch may have used.
                conn.execute(
                    "INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('readings', ?)",
                    (through,),
                )
                if old_epoch is not None:
                    lineage = inherit(ancestors, old_epoch, through, lost_epoch)
                    self._set_meta(conn, "lineage", encode_lineage(lineage))
                self._set_meta(conn, "new_epoch_unacked", "1")
                self._count_dropped("recovery", lost)
                self._save_drops(conn)
        return salvaged, lost

    def _insert_salvaged(self, readings: Sequence[Reading]) -> None:
        with self._transaction() as conn:
            rows = [
                (r.seq, r.time_ms, self._series_id(conn, r), r.value, r.quality, r.event)
                for r in readings
            ]
            conn.executemany(
                "INSERT INTO readings (seq, time_ms, series, value, quality, event) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
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

    def _add_event_column(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(readings)")}
        if "event" not in columns:
            self._db.execute(_EVENT_COLUMN)

    def _create(self) -> None:
        conn = self._db
        conn.executescript(_SCHEMA + _ADDED_TABLES)
        with self._transaction():
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),)
            )
            conn.execute("INSERT INTO state (id, acked_seq, dropped) VALUES (1, 0, 0)")

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _load_state(self, floor: Floor | None) -> None:
        """Loads the database's state; the `recovery` drop count is at least the floor's, as
        readings earlier recoveries counted as gone stay gone even when the transaction that
        counted them is lost too (or the database had to be replaced)."""
        conn = self._db
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.epoch = meta["epoch"]
        self._lineage = decode_lineage(meta.get("lineage"))
        self._new_epoch_unacked = meta.get("new_epoch_unacked") == "1"
        self._acked, dropped = conn.execute(
            "SELECT acked_seq, dropped FROM state WHERE id = 1"
        ).fetchone()
        self._consumers = dict(conn.execute("SELECT id, acked_seq FROM consumers").fetchall())
        stored = dict(conn.execute("SELECT cause, count FROM drops").fetchall())
        # Journals from before causes were kept counted only budget overflow.
        stored.setdefault("budget", dropped - sum(stored.values()))
        self._drops = {cause: int(stored.get(cause, 0)) for cause in DROP_CAUSES}
        if floor is not None and floor.recovery_dropped > self._drops["recovery"]:
            self._drops["recovery"] = floor.recovery_dropped
            self._drops_unsaved = True
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
        if self._conn is None:
            # After a failure the connection is dropped; the next use opens a fresh one.
            self._connect()
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
        """Returns once `readings` are durable, or parked in memory when they cannot be.

        Never raises for journal trouble (a full disk, I/O errors, a locked database):
        parked readings are retried on every later append and retention run, and counted
        in `dropped_by_cause` if they are ever given up. Appending to a closed journal
        counts the readings as dropped (`shutdown`).
        """
        if not readings:
            return
        if self._closed:
            self._count_dropped("shutdown", len(readings))
            return
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
            try:
                await self._run(self._commit, readings)
            except Exception:
                # Only reached when the journal thread itself is gone (closed under us).
                _LOGGER.exception("journal could not take %d readings", len(readings))
                self._count_dropped("shutdown", len(readings))
            for _, done in batches:
                if not done.done():
                    done.set_result(None)

    def _commit(self, readings: list[NewReading]) -> None:
        """Writes the backlog, then `readings`; parks them in the backlog on any failure."""
        if self._backlog and not self._write_backlog():
            self._park(readings)
            return
        try:
            self._insert(readings)
        except Exception as err:  # rolled back: parking loses nothing
            self._write_failed(err)
            self._park(readings)
            return
        # Durable from here on: nothing below may look like a failed append to the caller.
        self._commits += 1
        try:
            if self._commits % BUDGET_CHECK_EVERY == 0:
                self._enforce_budget()
            self._measure()
        except Exception as err:  # the next check retries
            self._write_failed(err)

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
                        r.event,
                    )
                    for r in readings
                ]
                conn.executemany(
                    "INSERT INTO readings (time_ms, series, value, quality, event) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                if self._drops_unsaved:
                    self._save_drops(conn)
                newest = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'readings'"
                ).fetchone()[0]
        except BaseException:
            # Series rows added in the rolled-back transaction are gone: forget their ids.
            self._series.clear()
            raise
        self._newest = int(newest)
        if not self._writable:
            _LOGGER.warning("journal writable again")
        self._writable = True

    def _series_id(self, conn: sqlite3.Connection, reading: NewReading | Reading) -> int:
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

    def _write_failed(self, err: BaseException) -> None:
        if self._writable:
            _LOGGER.error("journal cannot write (%s); keeping readings in memory", err)
        self._writable = False
        self._backlog_cause = _failure_cause(err)
        # After an I/O error SQLite may need a fresh connection (re-opened on the next use).
        self._close_conn()

    def _park(self, readings: list[NewReading]) -> None:
        self._backlog.extend(readings)
        overflow = len(self._backlog) - BACKLOG_CAP
        if overflow > 0:
            for _ in range(overflow):
                self._backlog.popleft()
            self._count_dropped(self._backlog_cause, overflow)

    def _count_dropped(self, cause: str, count: int) -> None:
        if count <= 0:
            return
        with self._drops_lock:
            self._drops[cause] += count
            self._drops_unsaved = True
            total = sum(self._drops.values())
        _LOGGER.error("journal dropped %d readings (%s; %d in all)", count, cause, total)

    def _save_drops(self, conn: sqlite3.Connection) -> None:
        """Persists the drop counters inside the caller's transaction."""
        with self._drops_lock:
            drops = dict(self._drops)
            self._drops_unsaved = False
        conn.executemany("INSERT OR REPLACE INTO drops (cause, count) VALUES (?, ?)", drops.items())
        conn.execute("UPDATE state SET dropped = ? WHERE id = 1", (sum(drops.values()),))

    def _write_backlog(self) -> bool:
        """Tries to write the parked readings; True when the backlog is empty."""
        parked = list(self._backlog)
        try:
            for start in range(0, len(parked), DELETE_CHUNK):
                self._insert(parked[start : start + DELETE_CHUNK])
                for _ in range(min(DELETE_CHUNK, len(parked) - start)):
                    self._backlog.popleft()
        except Exception as err:  # rolled back; kept parked
            self._write_failed(err)
            return False
        with contextlib.suppress(OSError):
            self._measure()
        return True

    # -- reading and acknowledging ---------------------------------------------

    async def read_after(
        self, after: int, limit: int, consumer: str | None = None
    ) -> tuple[list[Reading], bool]:
        """Durable readings with seq > `after`, ascending, at most `limit`; and if more exist.

        A `consumer` id not seen before is registered with `after` as its watermark, so
        retention keeps what it has not acknowledged from then on.
        """
        rows = await self._run(self._read_after, after, limit, consumer)
        more = len(rows) > limit
        return [Reading(*row) for row in rows[:limit]], more

    def _read_after(self, after: int, limit: int, consumer: str | None) -> list[Any]:
        try:
            if consumer is not None and consumer != DEFAULT_CONSUMER:
                self._register(consumer, min(after, self._newest))
            rows = self._db.execute(_READ_AFTER, (after, limit + 1)).fetchall()
            # The floor is durable before any reading is served: a recovery that loses served
            # readings can always tell (journal_lineage.py). In place, so a full disk is fine.
            floor = self._floor.floor
            if rows and (
                floor is None or floor.epoch != self.epoch or floor.newest_seq < rows[-1][0]
            ):
                self._floor.save(self._floor_now())
        except (sqlite3.Error, OSError) as err:
            self._close_conn()
            raise JournalUnavailable(f"the journal cannot be read: {err}") from err
        return rows

    def _register(self, consumer: str, watermark: int) -> None:
        if consumer in self._consumers:
            return
        if len(self._consumers) >= MAX_CONSUMERS:
            raise TooManyConsumers(f"at most {MAX_CONSUMERS} consumers besides the default")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO consumers (id, acked_seq) VALUES (?, ?)", (consumer, watermark)
            )
        self._consumers[consumer] = watermark

    async def ack(self, epoch: str, seq: int, consumer: str = DEFAULT_CONSUMER) -> int:
        """Persists `consumer`'s watermark `seq`; returns it (acks never move it back).

        An unknown consumer is registered by its first acknowledgement.
        """
        if epoch != self.epoch:
            raise EpochMismatch(f"epoch {epoch!r} is not the current epoch {self.epoch!r}")
        if seq > self._newest:
            raise AckBeyondNewest(f"seq {seq} is beyond the newest reading {self._newest}")
        return await self._run(self._save_ack, consumer, seq)

    def _save_ack(self, consumer: str, seq: int) -> int:
        try:
            if consumer != DEFAULT_CONSUMER:
                self._register(consumer, seq)
            current = self._acked if consumer == DEFAULT_CONSUMER else self._consumers[consumer]
            if seq > current or self._new_epoch_unacked:
                with self._transaction() as conn:
                    if consumer == DEFAULT_CONSUMER:
                        conn.execute(
                            "UPDATE state SET acked_seq = ? WHERE id = 1", (max(seq, current),)
                        )
                    else:
                        conn.execute(
                            "UPDATE consumers SET acked_seq = ? WHERE id = ?",
                            (max(seq, current), consumer),
                        )
                    # An acknowledgement in the new epoch: the consumer has caught up with it.
                    conn.execute("DELETE FROM meta WHERE key = 'new_epoch_unacked'")
        except (sqlite3.Error, OSError) as err:
            self._close_conn()
            raise JournalUnavailable(f"the acknowledgement could not be stored: {err}") from err
        watermark = max(seq, current)
        if consumer == DEFAULT_CONSUMER:
            self._acked = watermark
        else:
            self._consumers[consumer] = watermark
        self._new_epoch_unacked = False
        if seq > current:
            # Lets a recovery that loses this acknowledgement tell delivered readings from
            # lost ones; a floor that cannot be written only makes it count more as lost.
            with contextlib.suppress(OSError):
                self._floor.save(self._floor_now())
        return watermark

    def consumers(self) -> dict[str, int]:
        """Every consumer's watermark, the default one included."""
        return {DEFAULT_CONSUMER: self._acked, **self._consumers}

    async def remove_consumer(self, consumer: str) -> None:
        """Forgets a consumer: retention no longer keeps readings for it."""
        if consumer not in self._consumers:
            raise UnknownConsumer(f"no consumer {consumer!r}")
        await self._run(self._remove_consumer, consumer)

    def _remove_consumer(self, consumer: str) -> None:
        try:
            with self._transaction() as conn:
                conn.execute("DELETE FROM consumers WHERE id = ?", (consumer,))
        except (sqlite3.Error, OSError) as err:
            self._close_conn()
            raise JournalUnavailable(f"the consumer could not be removed: {err}") from err
        self._consumers.pop(consumer, None)

    def _retain_after(self) -> int:
        """Readings up to this seq are acknowledged by every consumer."""
        return min([self._acked, *self._consumers.values()])

    def stats(self) -> JournalStats:
        stored_unacked = self._newest - max(self._acked, self._oldest - 1)
        with self._drops_lock:
            drops = dict(self._drops)
        return JournalStats(
            epoch=self.epoch,
            newest_seq=self._newest,
            acked_seq=self._acked,
            pending=stored_unacked + len(self._backlog),
            bytes=self._bytes,
            budget_bytes=self._budget,
            retention_days=self._retention_s / 86400,
            dropped=sum(drops.values()),
            dropped_by_cause=drops,
            writable=self._writable,
            lineage=self._lineage,
            new_epoch_unacked=self._new_epoch_unacked,
        )

    # -- retention -------------------------------------------------------------

    async def enforce_retention(self) -> None:
        """Deletes acknowledged readings past the window or over budget; retries a backlog.

        Never raises for journal trouble: a failure is logged and retried at the next run.
        """
        await self._run(self._retention)

    def _retention(self) -> None:
        if self._backlog and not self._write_backlog():
            return
        cutoff_ms = int((self._clock() - self._retention_s) * 1000)
        try:
            while self._delete_chunk(
                "seq IN (SELECT seq FROM readings WHERE seq <= ? AND time_ms < ? "
                "ORDER BY seq LIMIT ?)",
                (self._retain_after(), cutoff_ms, DELETE_CHUNK),
            ):
                pass
            self._enforce_budget()
            if self._floor.floor != self._floor_now():
                self._floor.save(self._floor_now())
            self._measure()
        except Exception as err:  # the next run retries
            _LOGGER.warning("journal retention failed (%s); retrying at the next run", err)
            self._close_conn()

    def _used_bytes(self) -> int:
        conn = self._db
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _enforce_budget(self) -> None:
        """Frees pages until the data fits the budget: readings every consumer acked first."""
        if self._used_bytes() <= self._budget:
            return
        target = self._budget * BUDGET_LOW_WATER
        retain_after = self._retain_after()
        while self._used_bytes() > target:
            if self._oldest <= retain_after:
                self._delete_chunk("seq <= ?", (min(retain_after, self._oldest + 999),))
                continue
            if self._oldest > self._newest:
                return  # nothing left to delete: the schema itself is over budget
            last = min(self._newest, self._oldest + 999)
            self._delete_chunk("seq <= ?", (last,), dropped=last - self._oldest + 1)

    def _delete_chunk(self, where: str, args: tuple[int, ...], dropped: int = 0) -> bool:
        """Deletes one chunk of readings (`dropped` of them unacknowledged); True if any went."""
        with self._transaction() as conn:
            deleted = conn.execute(f"DELETE FROM readings WHERE {where}", args).rowcount  # noqa: S608
            if dropped:
                # Same transaction as the deletion: a drop is never lost from the count.
                self._count_dropped("budget", dropped)
            if self._drops_unsaved:
                self._save_drops(conn)
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
        if self._backlog and not self._write_backlog():
            # Counted (and persisted if the disk takes this one small write) before they go.
            count = len(self._backlog)
            _LOGGER.error("closing with %d readings never written", count)
            self._backlog.clear()
            self._count_dropped("shutdown", count)
            with contextlib.suppress(Exception), self._transaction() as conn:
                self._save_drops(conn)
        with contextlib.suppress(Exception):
            self._floor.save(self._floor_now())
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._close_conn()
