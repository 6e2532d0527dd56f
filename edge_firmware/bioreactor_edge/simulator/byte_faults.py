"""Seeded fault injection at the byte level, for long runs against the real agent.

The virtual bus asks `ByteFaults` about every transaction. Faults come in the
shapes real buses show: bursts of NAKs, reads of line noise, EZO circuits
stuck answering 254, and chips losing power and coming back - before a
transaction, between a command and its read, or in the middle of a read (the
rest of the bytes then read as 0xFF: nobody drives SDA, the pull-ups win). A
chip that comes back has been power-cycled and lost its volatile state.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from ..bus import BusNak
from .base import SimChip


class Moment(Enum):
    """When in a transaction a chip disappears."""

    BEFORE = "before"  # the address is not acknowledged
    AFTER_WRITE = "after_write"  # the command was taken, the chip is gone before the read
    MID_READ = "mid_read"  # part of the reply arrives, then 0xFF


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Probabilities per transaction addressed to a chip (reads for `garbage`)."""

    nak_burst: float = 0.01
    garbage: float = 0.01
    stuck_busy: float = 0.005
    unplug: float = 0.005


@dataclass(slots=True)
class _ChipState:
    nak_left: int = 0  # transactions to this chip still not acknowledged
    busy_left: int = 0  # transactions to this chip still answered with 254
    absent_until: int = 0  # the bus transaction at which the chip is back


@dataclass
class ByteFaults:
    """Decides, deterministically from `seed`, which transactions go wrong and how."""

    rates: FaultRates = field(default_factory=FaultRates)
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)  # fault kind -> times

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 (simulated faults, not secrets)
        self._chips: dict[int, _ChipState] = {}
        self._transactions = 0  # on the whole bus: absences last a bus-wide span

    def before(self, chip: SimChip, *, reading: bool) -> Moment | None:
        """Called as a transaction reaches `chip`; raises BusNak or says when it vanishes."""
        self._transactions += 1
        state = self._chips.setdefault(id(chip), _ChipState())
        if state.absent_until:
            if self._transactions < state.absent_until:
                raise BusNak(f"0x{chip.address:02x}: chip removed")
            state.absent_until = 0
            chip.power_cycle()  # back, freshly powered
        if state.busy_left:
            state.busy_left -= 1
            chip.faults.stuck_busy = state.busy_left > 0
        if state.nak_left or self._chance(self.rates.nak_burst):
            if not state.nak_left:
                self.injected["nak_burst"] += 1
                state.nak_left = self._rng.randint(1, 8)
            state.nak_left -= 1
            raise BusNak(f"0x{chip.address:02x}: not acknowledged (burst)")
        if self._chance(self.rates.stuck_busy):
            self.injected["stuck_busy"] += 1
            state.busy_left = self._rng.randint(5, 40)
            chip.faults.stuck_busy = True
        if self._chance(self.rates.unplug):
            moments = list(Moment) if reading else [Moment.BEFORE, Moment.AFTER_WRITE]
            moment = self._rng.choice(moments)
            self.injected[f"unplug_{moment.value}"] += 1
            state.absent_until = self._transactions + self._rng.randint(10, 200)
            if moment is Moment.BEFORE:
                raise BusNak(f"0x{chip.address:02x}: chip removed")
            return moment
        return None

    def garbage(self) -> bool:
        """Whether this read returns line noise instead of the chip's bytes."""
        if self._chance(self.rates.garbage):
            self.injected["garbage"] += 1
            return True
        return False

    def cut(self, data: bytes) -> bytes:
        """The bytes a read gets when the chip vanishes part-way through it."""
        keep = self._rng.randrange(len(data)) if data else 0
        return data[:keep] + b"\xff" * (len(data) - keep)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
