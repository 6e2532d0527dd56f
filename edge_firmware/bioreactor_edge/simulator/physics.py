"""A small stirred-bioreactor model that the simulated chips measure.

Coarse on purpose: plausible directions and magnitudes (logistic growth,
heater against losses to ambient, acid from growth against base dosing,
oxygen transfer against uptake), not a process model.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

AMBIENT_C = 22.0
HEATER_GAIN_C = 20.0  # equilibrium rise above ambient at full heater power
THERMAL_TAU_S = 600.0
CARRYING_OD = 8.0
ACID_PH_PER_OD = 0.12  # pH drop per unit of optical density grown
BASE_PH_PER_ML = 0.02  # pH rise per mL of base dosed
BASE_US_CM_PER_ML = 40.0  # conductivity rise per mL of base dosed
UPTAKE_MG_L_S_PER_OD = 0.004  # oxygen uptake rate per unit of optical density
MAX_STEP_S = 1.0  # integration step (simulated seconds)


def oxygen_saturation_mg_l(temperature_c: float) -> float:
    """Dissolved oxygen at air saturation in water (a fit good for 0-40 °C)."""
    t = temperature_c
    return 14.62 - 0.3898 * t + 0.006969 * t * t - 0.00005896 * t * t * t


@dataclass(frozen=True, slots=True)
class Culture:
    """What grows in a vessel: the temperature its heater holds, the pH it starts
    at, and how fast it doubles at its best temperature."""

    name: str
    temperature_c: float
    ph: float
    doubling_s: float


CULTURES = {
    "ecoli": Culture("E. coli", temperature_c=37.0, ph=7.0, doubling_s=1800.0),
    "yeast": Culture("Yeast", temperature_c=30.0, ph=5.5, doubling_s=5400.0),
    "cho": Culture("CHO cells", temperature_c=37.0, ph=7.0, doubling_s=72_000.0),
}


@dataclass(frozen=True, slots=True)
class ReactorState:
    """What the sensors see at one instant (with measurement noise)."""

    time_s: float
    temperature_c: float
    ph: float
    dissolved_oxygen_mg_l: float
    oxygen_saturation_pct: float
    orp_mv: float
    conductivity_us_cm: float
    optical_density: float
    air_temperature_c: float
    humidity_pct: float
    analog_v: tuple[float, float, float, float]  # OD photodiode, heater, stirrer, reference
    base_dosed_ml: float


class ReactorModel:
    """One culture vessel; advances to `clock()` (times `time_scale`) whenever it is read."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Callable[[], float] = time.monotonic,
        time_scale: float = 1.0,
        culture: Culture = CULTURES["ecoli"],
    ) -> None:
        self.culture = culture
        self._clock = clock
        self._time_scale = time_scale
        self._rng = random.Random(seed)  # noqa: S311 (simulated noise, not secrets)
        self._lock = threading.Lock()  # chips read it from bus threads
        self._last = clock()
        self._time_s = 0.0
        # 0..1; the power whose equilibrium is the culture's temperature (0.75: 37 °C)
        self.heater_power = (culture.temperature_c - AMBIENT_C) / HEATER_GAIN_C
        self.stir_rpm = 300.0
        self._temperature = AMBIENT_C + self.heater_power * HEATER_GAIN_C
        self._od = 0.05
        self._ph = culture.ph
        self._do = 0.95 * oxygen_saturation_mg_l(self._temperature)
        self._conductivity = 5000.0
        self._base_ml = 0.0

    def dose_base(self, ml: float) -> None:
        """Adds base (e.g. from the pump): pH and conductivity rise at once."""
        if not math.isfinite(ml) or ml < 0:
            raise ValueError(f"cannot dose {ml} mL")
        with self._lock:
            self._base_ml += ml
            self._ph = min(12.0, self._ph + BASE_PH_PER_ML * ml)
            self._conductivity += BASE_US_CM_PER_ML * ml

    def state(self) -> ReactorState:
        with self._lock:
            self._advance()
            return self._observe()

    def _advance(self) -> None:
        now = self._clock()
        remaining = max(0.0, now - self._last) * self._time_scale
        self._last = now
        while remaining > 0:
            dt = min(MAX_STEP_S, remaining)
            remaining -= dt
            self._time_s += dt
            self._step(dt)

    def _step(self, dt: float) -> None:
        power = min(1.0, max(0.0, self.heater_power))
        equilibrium = AMBIENT_C + power * HEATER_GAIN_C
        self._temperature += (equilibrium - self._temperature) * dt / THERMAL_TAU_S
        # Growth slows away from the culture's temperature.
        culture = self.culture
        rate = (
            math.log(2)
            / culture.doubling_s
            * math.exp(-(((self._temperature - culture.temperature_c) / 8.0) ** 2))
        )
        grown = rate * self._od * (1 - self._od / CARRYING_OD) * dt
        self._od += grown
        self._ph = max(2.0, self._ph - ACID_PH_PER_OD * grown)
        transfer = (0.002 + 0.00003 * max(0.0, self.stir_rpm)) * (
            oxygen_saturation_mg_l(self._temperature) - self._do
        )
        self._do = max(0.0, self._do + (transfer - UPTAKE_MG_L_S_PER_OD * self._od) * dt)

    def _noise(self, sigma: float) -> float:
        return self._rng.gauss(0.0, sigma)

    def _observe(self) -> ReactorState:
        temperature = self._temperature + self._noise(0.02)
        ph = self._ph + self._noise(0.003)
        do = max(0.0, self._do + self._noise(0.02))
        saturation = 100.0 * do / oxygen_saturation_mg_l(self._temperature)
        air = AMBIENT_C + 0.2 * (self._temperature - AMBIENT_C)
        return ReactorState(
            time_s=self._time_s,
            temperature_c=temperature,
            ph=ph,
            dissolved_oxygen_mg_l=do,
            oxygen_saturation_pct=saturation,
            # Nernstian with pH, a little higher with more oxygen.
            orp_mv=250.0 - 59.0 * (ph - 7.0) + 8.0 * (do - 5.0) + self._noise(0.5),
            conductivity_us_cm=self._conductivity + self._noise(2.0),
            optical_density=self._od,
            air_temperature_c=air + self._noise(0.02),
            humidity_pct=min(100.0, max(0.0, 55.0 - 0.8 * (air - AMBIENT_C) + self._noise(0.1))),
            analog_v=(
                3.0 * 10 ** (-0.2 * self._od) + self._noise(0.001),
                3.3 * min(1.0, max(0.0, self.heater_power)),
                self.stir_rpm / 1000.0,
                1.65 + self._noise(0.0005),
            ),
            base_dosed_ml=self._base_ml,
        )
