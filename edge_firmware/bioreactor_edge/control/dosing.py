"""pH dosing decisions: deadband, spacing, volume caps, input lockout, no-response alarm.

One `Doser` drives one pump in one direction (base raises pH, acid lowers it).
It answers "how many mL now?" and never more than its limits allow, counting
every commanded volume against the hourly and daily caps whether or not the
pump confirmed it: an unconfirmed dose may still have happened.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

HOUR_S = 3600.0
DAY_S = 86400.0


class Direction(IntEnum):
    """+1: the pump's liquid raises pH (base); -1: it lowers pH (acid)."""

    RAISES = 1
    LOWERS = -1


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class DosingLimits:
    """Hard bounds; the loop never doses outside them."""

    max_dose_ml: float
    max_ml_per_hour: float
    max_ml_per_day: float
    min_interval_s: float
    max_input_age_s: float
    min_dose_ml: float = 0.1

    def __post_init__(self) -> None:
        for name in ("max_dose_ml", "max_ml_per_hour", "max_ml_per_day", "max_input_age_s"):
            _positive(name, getattr(self, name))
        _positive("min_interval_s", self.min_interval_s, allow_zero=True)
        _positive("min_dose_ml", self.min_dose_ml)
        if self.min_dose_ml > self.max_dose_ml:
            raise ValueError("min_dose_ml must not exceed max_dose_ml")


@dataclass(frozen=True, slots=True)
class DosingSettings:
    """What the loop aims for and how hard it pushes."""

    setpoint: float
    deadband: float
    ml_per_unit: float  # mL dosed per pH unit outside the setpoint
    expected_change_per_ml: float  # pH change one mL should cause (for the alarm)
    # A dose is judged by the reading `response_delay_s` after it (mixing time): at least
    # this share of the expected change must show up. No dose goes out before the previous
    # one is judged.
    response_delay_s: float = 60.0
    response_fraction: float = 0.3
    # Smaller doses are not judged: their effect drowns in sensor noise and acid production.
    min_judged_change: float = 0.02
    # Doses in a row that must each fail to show it before the alarm: one noisy reading
    # or a burst of acid is not a broken pump.
    unresponsive_doses: int = 3

    def __post_init__(self) -> None:
        if not math.isfinite(self.setpoint):
            raise ValueError("setpoint must be finite")
        _positive("deadband", self.deadband, allow_zero=True)
        _positive("ml_per_unit", self.ml_per_unit)
        _positive("expected_change_per_ml", self.expected_change_per_ml)
        _positive("min_judged_change", self.min_judged_change, allow_zero=True)
        _positive("response_delay_s", self.response_delay_s, allow_zero=True)
        if not 0 <= self.response_fraction <= 1:
            raise ValueError("response_fraction must be within 0-1")
        if self.unresponsive_doses < 1:
            raise ValueError("unresponsive_doses must be at least 1")


@dataclass(frozen=True, slots=True)
class Input:
    """The newest pH reading: its value, when it was taken, and whether it can be trusted."""

    value: float
    time_s: float
    good: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """`ml` > 0 means dose that much now; otherwise `reason` says why not."""

    ml: float
    reason: str

    @property
    def locked_out(self) -> bool:
        return self.reason.startswith("lockout")


@dataclass(frozen=True, slots=True)
class _Dose:
    time_s: float
    ml: float
    value_before: float


class Doser:
    """Decides the doses of one pump; `record_dose` after each command sent to it."""

    def __init__(
        self, settings: DosingSettings, limits: DosingLimits, direction: Direction
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.direction = direction
        self.alarm: str | None = None
        self._doses: deque[_Dose] = deque()
        self._unchecked: _Dose | None = None
        self._unresponsive = 0

    def dosed_within(self, now_s: float, window_s: float) -> float:
        """mL commanded in the last `window_s` (doses stamped in the future count too:
        after a backwards clock jump, counting them is the safe side)."""
        return sum(d.ml for d in self._doses if now_s - d.time_s < window_s)

    def decide(self, now_s: float, reading: Input | None) -> Decision:
        lockout = self._lockout(now_s, reading)
        if lockout is not None or reading is None:
            return Decision(0.0, f"lockout:{lockout or 'input_error'}")
        error = (self.settings.setpoint - reading.value) * self.direction
        hold = self._hold(now_s, error)
        if hold is not None:
            return Decision(0.0, hold)
        hour_left = self.limits.max_ml_per_hour - self.dosed_within(now_s, HOUR_S)
        day_left = self.limits.max_ml_per_day - self.dosed_within(now_s, DAY_S)
        ml = min(self.limits.max_dose_ml, self.settings.ml_per_unit * error, hour_left, day_left)
        if ml < self.limits.min_dose_ml:
            smallest = self.limits.min_dose_ml
            cap = "day_cap" if day_left < smallest else "hour_cap" if hour_left < smallest else None
            if cap is not None:
                return Decision(0.0, cap)
            ml = smallest
        return Decision(ml, "dose")

    def _lockout(self, now_s: float, reading: Input | None) -> str | None:
        """Why no dose may go out whatever the pH says, or None."""
        if self.alarm is not None:
            return self.alarm
        if reading is None or not reading.good or not math.isfinite(reading.value):
            return "input_error"
        if now_s - reading.time_s > self.limits.max_input_age_s:
            return "input_stale"
        if not self._responded(now_s, reading):
            self.alarm = "no_response"
            return self.alarm
        return None

    def _hold(self, now_s: float, error: float) -> str | None:
        """Why no dose is due now, or None."""
        if error <= self.settings.deadband:
            return "in_band"
        if self._unchecked is not None:
            return "awaiting_response"
        last = self._doses[-1].time_s if self._doses else None
        if last is not None and now_s - last < self.limits.min_interval_s:
            return "min_interval"
        return None

    def record_dose(self, time_s: float, ml: float, value_before: float) -> None:
        """Counts a commanded dose against the caps and arms the response check."""
        dose = _Dose(time_s, ml, value_before)
        self._doses.append(dose)
        self._unchecked = dose
        while self._doses and time_s - self._doses[0].time_s >= DAY_S:
            self._doses.popleft()

    def clear_alarm(self) -> None:
        """A person checked pump and line; dosing may resume."""
        self.alarm = None
        self._unchecked = None
        self._unresponsive = 0

    def _responded(self, now_s: float, reading: Input) -> bool:
        """False once too many doses in a row failed to move pH (pump or line failure).

        Judges the last dose once its response delay has passed.
        """
        dose = self._unchecked
        if dose is None or now_s - dose.time_s < self.settings.response_delay_s:
            return True
        self._unchecked = None
        moved = (reading.value - dose.value_before) * self.direction
        expected = dose.ml * self.settings.expected_change_per_ml
        if expected < self.settings.min_judged_change:
            return True
        if moved >= self.settings.response_fraction * expected:
            self._unresponsive = 0
            return True
        self._unresponsive += 1
        return self._unresponsive < self.settings.unresponsive_doses

    # -- persistence: the caps must hold across an agent restart ------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "alarm": self.alarm,
            "unresponsive": self._unresponsive,
            "doses": [[d.time_s, d.ml, d.value_before] for d in self._doses],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.alarm = data.get("alarm")
        self._unresponsive = int(data.get("unresponsive", 0))
        self._doses = deque(_Dose(float(t), float(ml), float(v)) for t, ml, v in data["doses"])
        self._unchecked = None
