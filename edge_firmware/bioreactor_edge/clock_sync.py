"""Is the system clock synchronised? Readings taken before it is are marked `unsynced`.

A board without a real-time clock (BeagleBone Black, Raspberry Pi) boots with a clock
from the last shutdown or 1970 until NTP sets it. A reading stamped with such a time
must not become a statistic at a wrong hour, so the journal keeps it with quality
`unsynced` (docs/api.md) and `/status` lists the problem `clock_unsynced`.

Two sources, either is enough: systemd-timesyncd's flag file, and the kernel's own
NTP state (adjtimex(2): not TIME_ERROR and STA_UNSYNC clear), which chrony and ntpd
keep up to date too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .models import NewReading, Quality

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
_TIME_ERROR = 5  # adjtimex(2) return value: the clock is not synchronised
_STA_UNSYNC = 0x0040


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (Linux), up to `tai` plus the kernel's padding."""

    _fields_ = [  # noqa: RUF012 (ctypes' declaration form)
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


@functools.cache
def _adjtimex() -> Callable[[Any], int] | None:
    """libc's adjtimex, looked up once: find_library runs ldconfig, far too slow to do on
    every journal append."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        adjtimex: Callable[[Any], int] = ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    return adjtimex


def kernel_clock_synced() -> bool | None:
    """The kernel's NTP state via adjtimex(2) (read-only: modes = 0); None if unavailable."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = _Timex()
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def system_clock_synced(
    flag: Path = TIMESYNCD_FLAG, kernel: Callable[[], bool | None] = kernel_clock_synced
) -> bool:
    """True once timesyncd has flagged the clock or the kernel reports it synchronised."""
    return flag.exists() or bool(kernel())


def always_synced() -> bool:
    """For a clock that is right by construction (the simulator's)."""
    return True


def mark_unsynced(readings: Sequence[NewReading]) -> list[NewReading]:
    """The readings with quality `unsynced`: their time cannot be trusted, so neither can any
    other quality statement about when they were taken."""
    return [dataclasses.replace(r, quality=Quality.UNSYNCED.value) for r in readings]
