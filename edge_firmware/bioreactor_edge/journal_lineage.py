"""Epoch lineage: what the journal must remember so it never reuses a reading's identity.

A reading is (agent id, epoch, seq). When start-up recovery loses committed data (a damaged
WAL tail, a corrupt database that had to be salvaged), the numbers above what survived may
already have been served, so the journal starts a new epoch. The new epoch *inherits* the
surviving readings under their old numbers: its `lineage` says "(this epoch, seq) is the same
reading as (ancestor, seq) for every seq <= through_seq", so a consumer that already has an
ancestor's readings up to some seq can continue from there instead of taking them again.

Loss is detected against the *served floor*: a tiny file beside the database that records,
durably before any reading is served (and after each acknowledgement, every minute and at
close), the epoch, the newest seq it has reached and the seq every consumer acknowledged. The
floor lives outside SQLite, so a damaged WAL cannot take it back with the transactions it
loses. A database whose newest seq is below its epoch's floor has lost committed readings,
whatever removed them (a truncated WAL, a card that acknowledged writes it never made). A
floor naming an epoch the database neither is nor descends from means the database lost that
epoch's start: it is back in an older epoch whose higher seqs may have been served, so it must
not continue that epoch either. The floor also keeps the `recovery` drop count, which a lost
transaction would otherwise take with it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .durable import fsync_directory

FLOOR_FILE = "served-floor"
# Ancestors kept in an epoch's lineage; older ones are forgotten (each recovery adds one).
MAX_ANCESTORS = 16


@dataclass(frozen=True, slots=True)
class Ancestor:
    """(this epoch, seq) is the same reading as (`epoch`, seq) for seq <= `through_seq`."""

    epoch: str
    through_seq: int


@dataclass(frozen=True, slots=True)
class Floor:
    """The newest seq `epoch` is known to have reached (durably recorded before serving), the
    seq every consumer had acknowledged, and the readings recovery had counted as gone."""

    epoch: str
    newest_seq: int
    recovery_dropped: int = 0
    acked_seq: int = 0


def inherit(
    ancestors: tuple[Ancestor, ...], epoch: str, through_seq: int, lost_epoch: str | None = None
) -> tuple[Ancestor, ...]:
    """The lineage of a new epoch that continues `epoch` (with `ancestors`) up to `through_seq`.

    `lost_epoch`: a later epoch that also continued `epoch` and whose start the database lost;
    it held `epoch`'s readings at least up to `through_seq` (the survivors are a prefix of its
    history), so the new epoch names it too: a consumer that knows only it can continue.
    """
    older = tuple(Ancestor(a.epoch, min(a.through_seq, through_seq)) for a in ancestors)
    lost = (Ancestor(lost_epoch, through_seq),) if lost_epoch is not None else ()
    return ((Ancestor(epoch, through_seq), *lost, *older))[:MAX_ANCESTORS]


def lost_later_epoch(
    floor: Floor | None, epoch: str, ancestors: tuple[Ancestor, ...]
) -> str | None:
    """The floor's epoch when `epoch` (with `ancestors`) neither is nor descends from it: a
    later epoch whose start the database has lost (or an ancestor forgotten beyond
    MAX_ANCESTORS, where a new epoch is the safe answer too). None otherwise."""
    if floor is None or floor.epoch == epoch or any(a.epoch == floor.epoch for a in ancestors):
        return None
    return floor.epoch


def floor_for(floor: Floor | None, epoch: str, ancestors: tuple[Ancestor, ...]) -> Floor | None:
    """The floor if it speaks for the history `epoch` holds a prefix of: `epoch`'s own, or a
    later epoch's whose start was lost. An ancestor's floor says nothing about `epoch`'s seqs
    above what it inherited."""
    if floor is None or any(a.epoch == floor.epoch for a in ancestors):
        return None
    return floor


def encode_lineage(ancestors: tuple[Ancestor, ...]) -> str:
    return json.dumps([[a.epoch, a.through_seq] for a in ancestors])


def decode_lineage(text: str | None) -> tuple[Ancestor, ...]:
    """The stored lineage; unreadable text is an empty lineage (it only helps consumers)."""
    if not text:
        return ()
    try:
        raw = json.loads(text)
        return tuple(Ancestor(str(epoch), int(seq)) for epoch, seq in raw if isinstance(seq, int))[
            :MAX_ANCESTORS
        ]
    except (ValueError, TypeError):
        return ()


_SLOT_BYTES = 512  # one sector each: a record never straddles two
# magic, generation, newest seq, epoch[, recovery drops, acked seq]; then a CRC-32 of it.
_RECORDS = {
    0x42524546: struct.Struct(">IQq64s"),  # first release
    0x42524547: struct.Struct(">IQq64sqq"),
}
_MAGIC = 0x42524547


def _records(data: bytes) -> list[tuple[int, Floor]]:
    """The intact (generation, floor) records of a floor file; torn or empty slots are skipped."""
    found = []
    for slot in range(2):
        start = slot * _SLOT_BYTES
        layout = _RECORDS.get(int.from_bytes(data[start : start + 4], "big"))
        if layout is None:
            continue
        record = data[start : start + layout.size + 4]
        if len(record) != layout.size + 4:
            continue
        if record[-4:] != zlib.crc32(record[:-4]).to_bytes(4, "big"):
            continue
        _, generation, newest, raw_epoch, *added = layout.unpack(record[:-4])
        epoch = raw_epoch.rstrip(b"\0").decode("ascii")
        found.append((generation, Floor(epoch, newest, *added)))
    return found


class FloorFile:
    """The served floor, rewritten in place in two checksummed slots, alternately.

    In place, so recording it needs no new disk blocks: a full disk must not stop the agent
    from serving readings, which is what lets a consumer acknowledge them and free space.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / FLOOR_FILE
        self._generation = 0
        self.floor: Floor | None = None

    def open(self) -> Floor | None:
        """Makes the file if needed; returns the newest floor recorded before (if any)."""
        fd = self._open_allocated()
        try:
            records = _records(os.pread(fd, 2 * _SLOT_BYTES, 0))
        finally:
            os.close(fd)
        if records:
            self._generation, self.floor = max(records, key=lambda record: record[0])
        return self.floor

    def save(self, floor: Floor) -> None:
        """Records `floor` durably (fdatasync) in the slot not holding the newest record."""
        record = _RECORDS[_MAGIC].pack(
            _MAGIC,
            self._generation + 1,
            floor.newest_seq,
            floor.epoch.encode("ascii"),
            floor.recovery_dropped,
            floor.acked_seq,
        )
        record += zlib.crc32(record).to_bytes(4, "big")
        fd = self._open_allocated()
        try:
            os.pwrite(fd, record, ((self._generation + 1) % 2) * _SLOT_BYTES)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._generation += 1
        self.floor = floor

    def _open_allocated(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 2 * _SLOT_BYTES:
                # Allocated, not sparse: later rewrites never need a block of a full disk.
                os.posix_fallocate(fd, 0, 2 * _SLOT_BYTES)
                os.fsync(fd)
                fsync_directory(self._path.parent)
        except BaseException:
            os.close(fd)
            raise
        return fd
