"""Clock synchronisation: the timesyncd flag, the kernel's NTP state, marking readings."""

from __future__ import annotations

from pathlib import Path

from bioreactor_edge.clock_sync import (
    kernel_clock_synced,
    mark_unsynced,
    system_clock_synced,
)
from bioreactor_edge.models import NewReading


def test_timesyncd_flag_is_enough(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert system_clock_synced(flag, kernel=lambda: False) is False
    flag.touch()
    assert system_clock_synced(flag, kernel=lambda: False) is True


def test_kernel_state_is_enough(tmp_path: Path) -> None:
    missing = tmp_path / "synchronized"
    assert system_clock_synced(missing, kernel=lambda: True) is True
    # No adjtimex (another libc, a sandbox): only the flag can say so.
    assert system_clock_synced(missing, kernel=lambda: None) is False


def test_kernel_probe_answers_on_linux() -> None:
    # Read-only adjtimex works unprivileged; whether this machine is synced varies.
    assert kernel_clock_synced() in (True, False)


def test_mark_unsynced_keeps_everything_but_quality() -> None:
    reading = NewReading(1, "r", "s", "ph", 7.0, "pH", "uncompensated")
    [marked] = mark_unsynced([reading])
    assert marked.quality == "unsynced"
    assert (marked.time_ms, marked.sensor, marked.value) == (1, "s", 7.0)
