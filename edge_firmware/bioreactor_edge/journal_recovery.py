"""Start-up recovery helpers for the journal: WAL validation, evidence keeping, salvage.

SQLite's own WAL recovery silently keeps the frames up to the last valid commit frame and
ignores the rest. `scan_wal` re-implements that check from the documented file format
(https://www.sqlite.org/fileformat2.html#the_write_ahead_log) so start-up can say what was
discarded. A corrupt database is never deleted: it is moved aside and read from a scratch copy.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .durable import fsync_directory
from .models import Reading

WAL_HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24
_MAGIC_LITTLE_ENDIAN = 0x377F0682
_MAGIC_BIG_ENDIAN = 0x377F0683
_WAL_FORMAT_VERSION = 3007000
# SQLite bumps salt-1 by one at every WAL reset; frames whose salt-1 is a little behind the
# header's are leftovers of earlier, already checkpointed generations, not lost data.
_STALE_GENERATIONS = 1 << 16
_SALVAGE_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class WalScan:
    """What SQLite's recovery will keep of a WAL file, and what it will discard."""

    valid_frames: int  # frames up to and including the last valid commit frame
    discarded_frames: int  # frame slots after it (a partial trailing frame counts as one)
    discarded_bytes: int
    stale_bytes: int  # frames of earlier WAL generations (already in the database file)
    problem: str  # empty when nothing was discarded
    # At least two commit frames of the current generation lie in the discarded part: the
    # first of those transactions was fsynced (acknowledged) before the next one was written,
    # so committed readings are lost, not just an unfinished transaction.
    lost_commits: bool = False
    # The discarded frames of the current generation as (page number, page bytes), in order,
    # up to the last commit frame among them (what the lost transactions wrote).
    lost_pages: tuple[tuple[int, bytes], ...] = ()


def _checksum(words: tuple[int, ...], s0: int, s1: int) -> tuple[int, int]:
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _valid_page_size(raw: int) -> int | None:
    size = 65536 if raw == 1 else raw
    if 512 <= size <= 65536 and size & (size - 1) == 0:
        return size
    return None


def scan_wal(path: Path) -> WalScan:  # noqa: PLR0911, PLR0912 (one check per format rule)
    """Validate a WAL file the way SQLite's recovery does (missing file: nothing to discard)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalScan(0, 0, 0, 0, "")
    size = len(data)
    if size == 0:
        return WalScan(0, 0, 0, 0, "")
    if size < WAL_HEADER_BYTES:
        return WalScan(0, 0, size, 0, f"WAL header torn ({size} bytes); whole WAL ignored")
    magic, version, raw_page_size, _, salt1, salt2, sum0, sum1 = struct.unpack(
        ">8I", data[:WAL_HEADER_BYTES]
    )
    if magic not in (_MAGIC_LITTLE_ENDIAN, _MAGIC_BIG_ENDIAN):
        return WalScan(0, 0, size, 0, f"WAL magic 0x{magic:08x} invalid; whole WAL ignored")
    page_size = _valid_page_size(raw_page_size)
    if version != _WAL_FORMAT_VERSION or page_size is None:
        return WalScan(0, 0, size, 0, "WAL header invalid; whole WAL ignored")
    order = ">" if magic == _MAGIC_BIG_ENDIAN else "<"
    s0, s1 = _checksum(struct.unpack(f"{order}6I", data[:24]), 0, 0)
    if (s0, s1) != (sum0, sum1):
        return WalScan(0, 0, size, 0, "WAL header checksum mismatch; whole WAL ignored")

    frame_bytes = FRAME_HEADER_BYTES + page_size
    page_words = f"{order}{page_size // 4}I"
    offset = WAL_HEADER_BYTES
    frames = valid_frames = 0
    end_valid = WAL_HEADER_BYTES
    stale = False
    reason = "torn frame"
    while offset + frame_bytes <= size:
        _, commit_size, f_salt1, f_salt2, f_sum0, f_sum1 = struct.unpack(
            ">6I", data[offset : offset + FRAME_HEADER_BYTES]
        )
        if (f_salt1, f_salt2) != (salt1, salt2):
            # An older generation differs in both salts; a damaged header in just one.
            stale = f_salt2 != salt2 and 0 < (salt1 - f_salt1) % (1 << 32) < _STALE_GENERATIONS
            reason = "frame of another WAL generation"
            break
        s0, s1 = _checksum(struct.unpack(f"{order}2I", data[offset : offset + 8]), s0, s1)
        page = data[offset + FRAME_HEADER_BYTES : offset + frame_bytes]
        s0, s1 = _checksum(struct.unpack(page_words, page), s0, s1)
        if (s0, s1) != (f_sum0, f_sum1):
            reason = "frame checksum mismatch"
            break
        frames += 1
        offset += frame_bytes
        if commit_size:
            valid_frames = frames
            end_valid = offset
    else:
        if offset < size:
            reason = "torn frame"
        elif end_valid < size:
            reason = "frames without a commit"

    # Stale frames are only the ones after the break; uncommitted current frames are lost.
    tail_end = offset if stale else size
    discarded_bytes = tail_end - end_valid
    lost_pages = _committed_after(data[:tail_end], end_valid, frame_bytes, salt2)
    stale_bytes = size - tail_end
    discarded_frames = math.ceil(discarded_bytes / frame_bytes)
    problem = ""
    if discarded_bytes:
        problem = (
            f"WAL: discarded {discarded_frames} frame(s), {discarded_bytes} bytes after the "
            f"last valid commit frame ({reason})"
        )
    return WalScan(
        valid_frames,
        discarded_frames,
        discarded_bytes,
        stale_bytes,
        problem,
        lost_commits=sum(commit for _, _, commit in lost_pages) >= 2,
        lost_pages=tuple((number, page) for number, page, _ in lost_pages),
    )


def _committed_after(
    data: bytes, offset: int, frame_bytes: int, salt2: int
) -> list[tuple[int, bytes, bool]]:
    """(page number, page, is commit) of the current generation's frames from `offset`,
    up to the last commit frame; frames whose salt-2 differs belong to another generation."""
    found: list[tuple[int, bytes, bool]] = []
    last_commit = 0
    while offset + frame_bytes <= len(data):
        number, commit_size, _, f_salt2 = struct.unpack(
            ">4I", data[offset : offset + FRAME_HEADER_BYTES - 8]
        )
        if f_salt2 == salt2:
            page = data[offset + FRAME_HEADER_BYTES : offset + frame_bytes]
            found.append((number, page, bool(commit_size)))
            if commit_size:
                last_commit = len(found)
        offset += frame_bytes
    return found[:last_commit]


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """SQLite's big-endian varint at `at`: (value, offset after it)."""
    value = 0
    for index in range(9):
        byte = data[at + index]
        if index == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + index + 1
    raise AssertionError("unreachable")


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def sequence_in_page(page: bytes, table: str) -> int | None:
    """The AUTOINCREMENT counter of `table` in a `sqlite_sequence` leaf page, if readable.

    Record format: https://www.sqlite.org/fileformat2.html#record_format. Used on WAL frames
    that recovery discards, to count the readings those lost transactions had committed.
    """
    try:
        if page[0] != 0x0D:  # not a table b-tree leaf page
            return None
        cells = struct.unpack(">H", page[3:5])[0]
        for index in range(cells):
            at = struct.unpack(">H", page[8 + 2 * index : 10 + 2 * index])[0]
            _, at = _varint(page, at)  # payload size
            _, at = _varint(page, at)  # rowid
            header_size, types_at = _varint(page, at)
            name_type, types_at = _varint(page, types_at)
            seq_type, _ = _varint(page, types_at)
            value_at = at + header_size
            if name_type < 13 or name_type % 2 == 0 or seq_type not in _INT_SIZES:
                continue
            name_size = (name_type - 13) // 2
            name = page[value_at : value_at + name_size].decode("utf-8")
            if name != table:
                continue
            size = _INT_SIZES[seq_type]
            raw = page[value_at + name_size : value_at + name_size + size]
            if len(raw) != size:
                return None
            return int.from_bytes(raw, "big", signed=True)
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


def quick_check_problem(conn: sqlite3.Connection) -> str:
    """Empty when `PRAGMA quick_check` passes, else what it reported."""
    rows = conn.execute("PRAGMA quick_check").fetchall()
    messages = [str(row[0]) for row in rows]
    return "" if messages == ["ok"] else "; ".join(messages[:5])


def move_aside(db_path: Path, stamp: str) -> Path:
    """Rename the database and its WAL/SHM to journal-corrupt-<stamp>.db*; return the new db path.

    Renaming (not copying) keeps the evidence byte-for-byte and frees the name for a fresh database.
    """
    target = db_path.with_name(f"{db_path.stem}-corrupt-{stamp}{db_path.suffix}")
    n = 1
    while target.exists():
        target = db_path.with_name(f"{db_path.stem}-corrupt-{stamp}-{n}{db_path.suffix}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{db_path}{suffix}")
        if source.exists():
            source.rename(f"{target}{suffix}")
    fsync_directory(db_path.parent)  # the renames, durable before a new database takes the name
    return target


_SALVAGE_QUERY = (
    "SELECT r.seq, r.time_ms, s.reactor, s.sensor, s.quantity, r.value, s.unit, r.quality, {} "
    "FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)


def _salvage_query(conn: sqlite3.Connection) -> str:
    """Reads actuation events' details too, where the journal is new enough to hold them."""
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(readings)")}
    except sqlite3.DatabaseError:
        columns = set()
    return _SALVAGE_QUERY.format("r.event" if "event" in columns else "NULL")


def _salvage_rows(conn: sqlite3.Connection, after: int, newest: int) -> Iterator[list[Reading]]:
    cursor = after
    skip = 1
    query = _salvage_query(conn)
    while cursor < newest:
        rows: list[tuple[object, ...]] = []
        damaged = False
        try:
            # Row by row, so the rows read before a damaged page are kept.
            rows.extend(conn.execute(query, (cursor, _SALVAGE_CHUNK)))
        except sqlite3.DatabaseError:
            damaged = True
        if rows:
            cursor = int(str(rows[-1][0]))
            skip = 1
            yield [_reading(row) for row in rows]
        if damaged:
            # A damaged b-tree page: jump over it, widening the jump until reads succeed again.
            cursor += skip
            skip *= 2
        elif len(rows) < _SALVAGE_CHUNK:
            return


def _reading(row: tuple[object, ...]) -> Reading:
    seq, time_ms, reactor, sensor, quantity, value, unit, quality, event = row
    return Reading(
        seq=int(str(seq)),
        time_ms=int(str(time_ms)),
        reactor=str(reactor),
        sensor=str(sensor),
        quantity=str(quantity),
        value=float(str(value)),
        unit=str(unit),
        quality=str(quality),
        event=None if event is None else str(event),
    )


def _scalar(conn: sqlite3.Connection, query: str) -> object:
    """The first column of the first row, or None when missing or unreadable."""
    try:
        row = conn.execute(query).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a corrupt journal still tells (None where it is unreadable)."""

    epoch: str | None
    lineage: str | None
    acked_seq: int  # 0 when unreadable: then every readable reading is salvaged
    newest_seq: int | None
    readings: Iterator[list[Reading]]  # unacknowledged, oldest first, original seqs


@contextlib.contextmanager
def salvage(evidence: Path, scratch: Path) -> Iterator[Evidence]:
    """The still-readable state and unacknowledged readings of a corrupt journal.

    Works on a scratch copy because opening the evidence itself would let SQLite rewrite it.
    Readings at or below the old watermark were already delivered and are not salvaged; the
    others keep their seq, so the new epoch can say they are the old epoch's readings.
    """
    for suffix in ("", "-wal"):
        source = Path(f"{evidence}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{scratch}{suffix}")
    try:
        conn = sqlite3.connect(scratch, isolation_level=None)
        try:
            epoch = _scalar(conn, "SELECT value FROM meta WHERE key = 'epoch'")
            lineage = _scalar(conn, "SELECT value FROM meta WHERE key = 'lineage'")
            acked = _scalar(conn, "SELECT acked_seq FROM state")
            newest = _scalar(conn, "SELECT seq FROM sqlite_sequence WHERE name = 'readings'")
            after = acked if isinstance(acked, int) else 0
            yield Evidence(
                epoch=epoch if isinstance(epoch, str) else None,
                lineage=lineage if isinstance(lineage, str) else None,
                acked_seq=after,
                newest_seq=newest if isinstance(newest, int) else None,
                readings=_salvage_rows(conn, after, newest if isinstance(newest, int) else 1 << 62),
            )
        finally:
            conn.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
