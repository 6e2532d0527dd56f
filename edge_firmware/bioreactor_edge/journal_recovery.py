"""Start-up recovery helpers for the journal: WAL validation, evidence keeping, salvage.

SQLite's own WAL recovery silently keeps the frames up to the last valid commit frame and
ignores the rest. `scan_wal` re-implements that check from the documented file format
(https://www.sqlite.org/fileformat2.html#the_write_ahead_log) so start-up can say what was
discarded. A corrupt database is never deleted: it is moved aside and read from a scratch copy.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .models import NewReading

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
    stale_bytes = size - tail_end
    discarded_frames = math.ceil(discarded_bytes / frame_bytes)
    problem = ""
    if discarded_bytes:
        problem = (
            f"WAL: discarded {discarded_frames} frame(s), {discarded_bytes} bytes after the "
            f"last valid commit frame ({reason})"
        )
    return WalScan(valid_frames, discarded_frames, discarded_bytes, stale_bytes, problem)


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
    fd = os.open(db_path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the renames durable before a new database takes the name
    finally:
        os.close(fd)
    return target


_SALVAGE_QUERY = (
    "SELECT r.seq, r.time_ms, s.reactor, s.sensor, s.quantity, r.value, s.unit, r.quality "
    "FROM readings r JOIN series s ON s.id = r.series WHERE r.seq > ? ORDER BY r.seq LIMIT ?"
)


def _salvage_rows(conn: sqlite3.Connection, after: int, newest: int) -> Iterator[list[NewReading]]:
    cursor = after
    skip = 1
    while cursor < newest:
        rows: list[tuple[object, ...]] = []
        damaged = False
        try:
            # Row by row, so the rows read before a damaged page are kept.
            rows.extend(conn.execute(_SALVAGE_QUERY, (cursor, _SALVAGE_CHUNK)))
        except sqlite3.DatabaseError:
            damaged = True
        if rows:
            cursor = int(str(rows[-1][0]))
            skip = 1
            yield [_new_reading(row) for row in rows]
        if damaged:
            # A damaged b-tree page: jump over it, widening the jump until reads succeed again.
            cursor += skip
            skip *= 2
        elif len(rows) < _SALVAGE_CHUNK:
            return


def _new_reading(row: tuple[object, ...]) -> NewReading:
    _, time_ms, reactor, sensor, quantity, value, unit, quality = row
    return NewReading(
        time_ms=int(str(time_ms)),
        reactor=str(reactor),
        sensor=str(sensor),
        quantity=str(quantity),
        value=float(str(value)),
        unit=str(unit),
        quality=str(quality),
    )


def salvage(evidence: Path, scratch: Path) -> Iterator[list[NewReading]]:
    """Yield, oldest first, the still-readable unacknowledged readings of a corrupt journal.

    Works on a scratch copy because opening the evidence itself would let SQLite rewrite it.
    Readings at or below the old watermark were already delivered and are not salvaged (they
    would come back as duplicates under the new epoch); if the watermark is unreadable, all are.
    """
    for suffix in ("", "-wal"):
        source = Path(f"{evidence}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{scratch}{suffix}")
    try:
        conn = sqlite3.connect(scratch, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        try:
            row = conn.execute("SELECT acked_seq FROM state").fetchone()
            after = int(row[0]) if row else 0
        except sqlite3.Error:
            after = 0
        try:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
            newest = int(row[0]) if row else 0
        except sqlite3.Error:
            newest = 1 << 62
        yield from _salvage_rows(conn, after, newest)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
