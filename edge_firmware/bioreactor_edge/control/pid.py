"""A PID controller with a bounded output and anti-windup, for the heater."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PidGains:
    """Gains in output units per unit of error (kp), per error-second (ki), per error/s (kd)."""

    kp: float
    ki: float
    kd: float = 0.0

    def __post_init__(self) -> None:
        for name in ("kp", "ki", "kd"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"PID gain {name} must be a finite number >= 0, got {value!r}")


class Pid:
    """Position-form PID; the output is clamped to [output_min, output_max].

    Anti-windup by conditional integration: while the output is saturated the
    integral only moves in the direction that leaves saturation, so a long
    warm-up does not build an integral that overshoots the setpoint later.
    The derivative acts on the measurement, not the error, so a setpoint change
    gives no kick.
    """

    def __init__(
        self, gains: PidGains, *, output_min: float = 0.0, output_max: float = 1.0
    ) -> None:
        if not output_min < output_max:
            raise ValueError(f"output range [{output_min}, {output_max}] is empty")
        self.gains = gains
        self.output_min = output_min
        self.output_max = output_max
        self.integral = 0.0
        self._last_measurement: float | None = None

    def reset(self) -> None:
        """Forgets history (after a lockout or a mode change): the next update starts fresh."""
        self.integral = 0.0
        self._last_measurement = None

    def update(self, setpoint: float, measurement: float, dt_s: float) -> float:
        """The output for this step; `dt_s` is the time since the previous update."""
        if not (math.isfinite(setpoint) and math.isfinite(measurement)):
            raise ValueError("PID setpoint and measurement must be finite")
        if not math.isfinite(dt_s) or dt_s <= 0:
            raise ValueError(f"PID step must be a positive time, got {dt_s!r}")
        error = setpoint - measurement
        derivative = 0.0
        if self._last_measurement is not None:
            derivative = -(measurement - self._last_measurement) / dt_s
        self._last_measurement = measurement
        g = self.gains
        unclamped = g.kp * error + g.ki * (self.integral + error * dt_s) + g.kd * derivative
        saturated_high = unclamped > self.output_max and error > 0
        saturated_low = unclamped < self.output_min and error < 0
        if not (saturated_high or saturated_low):
            self.integral += error * dt_s
        output = g.kp * error + g.ki * self.integral + g.kd * derivative
        return min(self.output_max, max(self.output_min, output))
