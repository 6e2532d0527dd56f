"""Ready-made simulated reactor buses for the CLI, tests and benchmarks."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from .adapters import GENERIC, Adapter
from .ads1115 import Ads1115Chip
from .base import SimChip
from .eeprom import Eeprom24c256, cape_contents
from .ezo import EzoChip
from .physics import ReactorModel
from .sht4x import Sht4xChip
from .tca9548a import Tca9548aMux
from .virtual_bus import VirtualBus

# (kind, address) of one fully equipped reactor, in the order they are added.
STANDARD_SET = (
    ("rtd", 0x66),
    ("ph", 0x63),
    ("do", 0x61),
    ("orp", 0x62),
    ("ec", 0x64),
    ("pmp", 0x67),
    ("sht4x", 0x44),
    ("ads1115", 0x48),
)
# Further register chips at their alternative addresses, then EZO circuits.
_EXTRA_REGISTER_CHIPS = (("sht4x", 0x45), ("ads1115", 0x49), ("ads1115", 0x4A), ("ads1115", 0x4B))
_EXTRA_EZO_KINDS = ("ph", "do", "orp", "ec", "rtd")
# Multiplexers live at 0x70-0x77; extra chips stay clear of them.
_FREE_ADDRESSES = range(0x08, 0x70)


def _extra_set(count: int) -> list[tuple[str, int]]:
    chosen = list(_EXTRA_REGISTER_CHIPS[:count])
    used = {address for _, address in STANDARD_SET} | {address for _, address in chosen}
    addresses = (a for a in _FREE_ADDRESSES if a not in used and a not in range(0x44, 0x4C))
    for kind, address in zip(itertools.cycle(_EXTRA_EZO_KINDS), addresses, strict=False):
        if len(chosen) >= count:
            break
        chosen.append((kind, address))
    if len(chosen) < count:
        raise ValueError(f"a simulated bus holds at most {len(STANDARD_SET) + len(chosen)} sensors")
    return chosen


def build_chip(
    kind: str, address: int, model: ReactorModel, *, speed: float = 1.0, seed: int = 0
) -> SimChip:
    """One simulated chip of a sensor kind, its delays divided by `speed`."""
    if kind == "sht4x":
        return Sht4xChip(address, model, serial=0x10000000 + seed, speed=speed, seed=seed)
    if kind == "ads1115":
        return Ads1115Chip(address, model, speed=speed, seed=seed)
    return EzoChip(kind, address, model, speed=speed, seed=seed)


def build_reactor_bus(
    model: ReactorModel,
    *,
    sensors: int = 8,
    speed: float = 1.0,
    seed: int = 0,
    adapter: Adapter = GENERIC,
) -> VirtualBus:
    """A bus with `sensors` chips measuring `model`: the standard set first, then extras.

    `speed` > 1 makes every chip answer that many times faster than the real
    one (an EZO circuit then manages `speed` readings a second).
    """
    if sensors < 0:
        raise ValueError(f"sensors must not be negative, got {sensors}")
    layout = list(STANDARD_SET[:sensors]) + _extra_set(max(0, sensors - len(STANDARD_SET)))
    bus = VirtualBus(adapter, seed=seed)
    for index, (kind, address) in enumerate(layout):
        bus.add(build_chip(kind, address, model, speed=speed, seed=seed * 1000 + index))
    return bus


# BeagleBone cape EEPROMs: claimed by the kernel's at24 driver, shown as UU.
CAPE_EEPROMS = range(0x54, 0x58)
UNCONFIGURED_MUX = 0x70


def build_board_bus(
    model: ReactorModel, *, adapter: Adapter, speed: float = 1.0, seed: int = 0
) -> VirtualBus:
    """A board as it comes: the standard sensor set, four cape EEPROMs bound to
    the kernel and a TCA9548A at 0x70 that no configuration mentions."""
    bus = build_reactor_bus(model, speed=speed, seed=seed, adapter=adapter)
    for address in CAPE_EEPROMS:
        bus.add(Eeprom24c256(address, contents=cape_contents(f"CAPE-{address:02X}")))
        bus.bind_kernel_driver(address)
    bus.add(Tca9548aMux(UNCONFIGURED_MUX))
    return bus


class CatchUpClock:
    """A wall clock that starts `behind_s` in the past and runs `scale` times faster
    until it has caught up with real time, then follows it.

    Lets a simulated agent produce hours of timestamped history (an outage backlog)
    in seconds; it never runs ahead of real time and never goes backwards.
    """

    def __init__(
        self, behind_s: float, scale: float, real: Callable[[], float] = time.time
    ) -> None:
        if behind_s < 0 or scale < 1:
            raise ValueError("behind_s must be >= 0 and scale >= 1")
        self._real = real
        self._real_start = real()
        self._sim_start = self._real_start - behind_s
        self._scale = scale

    def __call__(self) -> float:
        now = self._real()
        return min(now, self._sim_start + (now - self._real_start) * self._scale)
