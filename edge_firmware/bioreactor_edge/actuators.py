"""A reactor's outputs: relays, PWM channels and dosing pumps, each with a safe state.

An actuator knows its configured hard limits and safe state, nothing of loops:
the control runner (control/runner.py) decides what it should do. A request
outside the hard limits raises Refused before a byte moves. Chip
failures never raise: the actuator is marked in error, keeps what it *should*
be (`wanted`) and is driven there again at every refresh, so a relay expander
that resets is found and set back within one control tick.

Every command (set, safe state, dose) passes through here, so this is where
actuation events are journaled (actuation_events.py): once per command, not per tick
that repeats it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .actuation_events import SAFETY_COMMANDS, Actuation, ActuationLog
from .bus import BusError, BusOwner, I2CDevice
from .config import ReactorConfig
from .control.config import ActuatorConfig
from .drivers.base import DEFAULT_TIMING, DriverError, Identity, Timing
from .drivers.ezo import PmpDriver
from .drivers.mcp23017 import Mcp23017
from .drivers.pca9685 import Pca9685

_LOGGER = logging.getLogger(__name__)

HOUR_S = 3600.0
DAY_S = 86400.0
# A dose counts as delivered when the pump's total grew by at least this share of it.
DELIVERED_SHARE = 0.9
# A loop moves its PWM output a little at every tick: that is journaled once it has
# moved this far from the last journaled duty (a change of command or outcome always).
LOOP_DUTY_STEP = 0.05


class Refused(Exception):
    """A request the hard limits or the current state do not allow; nothing moved.

    `limit` names what refused it (a configuration key such as `max_dose_ml`, or
    a state such as `busy`).
    """

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Actuator(ABC):
    """One output of one reactor."""

    kind: ClassVar[str]
    # How far a repeated command's value may move before it is journaled again.
    journal_step: ClassVar[float] = 0.0

    def __init__(self, reactor_id: str, config: ActuatorConfig) -> None:
        self.id = f"{reactor_id}-{config.name}"
        self.reactor_id = reactor_id
        self.config = config
        self.wanted = config.safe
        self.applied: float | None = None  # what the chip last confirmed
        self.error: str | None = None
        self.error_message: str | None = None
        self.commanded_by = "start"
        self.loop: str | None = None  # the loop that drives it, if any
        self.log: ActuationLog | None = None  # where actuation events are journaled
        self._journaled: Actuation | None = None  # the last one

    @property
    def safe(self) -> float:
        return self.config.safe

    @property
    def in_safe_state(self) -> bool:
        return self.wanted == self.safe and self.applied == self.safe and self.error is None

    def check(self, value: float) -> float:
        """`value` if the hard limits allow it; Refused otherwise."""
        return value

    async def set(self, value: float, *, by: str) -> None:
        """Drives the output to `value` (checked against the hard limits first)."""
        self.wanted = self.check(value)
        self.commanded_by = by
        await self.refresh()
        # A loop commands its outputs at every tick: only a change is journaled.
        last = self._journaled
        if (
            not by.startswith("loop:")
            or last is None
            or (last.command, last.by, last.error) != ("set", by, self.error)
            or abs(last.value - self.wanted) > self.journal_step
        ):
            await self._journal("set", by, self.wanted, self.applied)

    async def to_safe(self, *, by: str) -> None:
        """Puts the output in its safe state (only logged and journaled when that changes
        something, or when the agent's safety logic asks: start, shutdown, emergency stop)."""
        before = (self.in_safe_state, self.error)
        if self.wanted != self.safe:
            _LOGGER.info("%s to its safe state (%s)", self.id, by)
        self.wanted = self.safe
        self.commanded_by = by
        await self.refresh()
        if by in SAFETY_COMMANDS or (self.in_safe_state, self.error) != before:
            await self._journal("safe", by, self.safe, self.applied)

    async def _journal(
        self,
        command: str,
        by: str,
        value: float,
        confirmed: float | None,
        *,
        unit: str = "",
        failure: tuple[str | None, str | None] | None = None,
    ) -> None:
        """Journals an actuation event; `failure` (code, message) overrides the current error."""
        if self.log is None:
            return
        error, message = failure or (self.error, self.error_message)
        event = Actuation(self.id, command, value, unit, by, confirmed, error, message)
        self._journaled = event
        await self.log.record(self.reactor_id, event)

    async def refresh(self) -> None:
        """Drives the chip to `wanted` again; records, never raises, a chip failure."""
        try:
            await self._apply(self.wanted)
        except (BusError, DriverError) as err:
            if self.error is None:
                _LOGGER.warning("actuator %s failed: %s", self.id, err)
            self.applied = None
            self.error, self.error_message = err.code, str(err)
            return
        if self.error is not None:
            _LOGGER.info("actuator %s recovered", self.id)
        self.applied = self.wanted
        self.error = self.error_message = None

    @abstractmethod
    async def _apply(self, value: float) -> None: ...

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.config.name,
            "kind": self.kind,
            "address": self.config.address,
            "channel": self.config.channel,
            "safe": self.safe,
            "wanted": self.wanted,
            "applied": self.applied,
            "in_safe_state": self.in_safe_state,
            "commanded_by": self.commanded_by,
            "loop": self.loop,
            "error": self.error,
            "error_message": self.error_message,
        }


class RelayBoard:
    """The relay pins of one MCP23017, written together (one latch for all of them)."""

    def __init__(self, chip: Mcp23017) -> None:
        self.chip = chip
        self.levels = 0
        self._lock = asyncio.Lock()

    async def drive(self, pin: int, on: bool) -> None:
        async with self._lock:
            self.levels = self.levels | (1 << pin) if on else self.levels & ~(1 << pin)
            if await self.chip.apply(self.levels):
                _LOGGER.warning(
                    "relay expander at 0x%02x had reset; outputs set again",
                    self.chip.device.address,
                )


class Relay(Actuator):
    """An on/off output (1 closed, 0 open) on an expander pin."""

    kind = "relay"

    def __init__(self, reactor_id: str, config: ActuatorConfig, board: RelayBoard) -> None:
        super().__init__(reactor_id, config)
        self.board = board

    def check(self, value: float) -> float:
        if value not in (0, 1):
            raise Refused("value", f"{self.id}: a relay is 0 (open) or 1 (closed)")
        return float(value)

    async def _apply(self, value: float) -> None:
        await self.board.drive(self.config.channel, bool(value))


class PwmChannel(Actuator):
    """A proportional output (duty 0-1) on a PCA9685 channel, never above `max_duty`."""

    kind = "pwm"
    journal_step = LOOP_DUTY_STEP

    def __init__(
        self, reactor_id: str, config: ActuatorConfig, chip: Pca9685, lock: asyncio.Lock
    ) -> None:
        super().__init__(reactor_id, config)
        self.chip = chip
        self._lock = lock

    def check(self, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise Refused("value", f"{self.id}: duty must be a number >= 0")
        if value > self.config.max_duty:
            raise Refused(
                "max_duty", f"{self.id}: duty {value} exceeds max_duty {self.config.max_duty}"
            )
        return float(value)

    def as_json(self) -> dict[str, Any]:
        # Clients offer manual duties only up to it.
        return {**super().as_json(), "max_duty": self.config.max_duty}

    async def _apply(self, value: float) -> None:
        async with self._lock:
            if await self.chip.set_duty(self.config.channel, value):
                _LOGGER.warning(
                    "PWM chip at 0x%02x had reset; configured again", self.config.address
                )


class Pump(Actuator):
    """An EZO-PMP dosing pump: doses within its hard caps; its safe state is stopped.

    Every commanded dose counts against the hourly and daily caps whether or not
    the pump confirmed it (an unconfirmed dose may still have happened). A dose
    is confirmed when the pump's total volume grew by it once the pump is idle;
    a pump that says it dispensed less is in error (`short_dose`) until a later
    dose is confirmed or a person clears it: a loop does not dose through it.
    """

    kind = "pump"

    def __init__(
        self, reactor_id: str, config: ActuatorConfig, driver: PmpDriver, clock: Callable[[], float]
    ) -> None:
        super().__init__(reactor_id, config)
        self.driver = driver
        self._clock = clock
        self.doses: deque[tuple[float, float]] = deque()  # (time_s, ml) of the last day
        self.total_ml: float | None = None
        self.last_dose_ml: float | None = None
        self.delivered_ml: float | None = None  # of the last finished dose
        self._pending: tuple[float, float] | None = None  # (total before, ml)
        self.dosing = False
        self.fault: tuple[str, str] | None = None  # (code, message) of a short dose
        self._finished: float | None = None  # ml of a dose confirmed, not journaled yet

    def dosed_within(self, window_s: float) -> float:
        now = self._clock()
        return sum(ml for when, ml in self.doses if now - when < window_s)

    def check(self, value: float) -> float:
        if value != 0:
            raise Refused("value", f"{self.id}: a pump is set with a dose, not a value")
        return 0.0

    def check_dose(self, ml: float) -> None:
        """Refused naming the limit when `ml` may not be dosed now."""
        config = self.config
        if not math.isfinite(ml) or ml < 0.01:
            raise Refused("volume_ml", f"{self.id}: a dose is at least 0.01 mL")
        if ml > config.max_dose_ml:
            raise Refused(
                "max_dose_ml", f"{self.id}: {ml} mL exceeds max_dose_ml {config.max_dose_ml}"
            )
        for limit, window, cap in (
            ("max_ml_per_hour", HOUR_S, config.max_ml_per_hour),
            ("max_ml_per_day", DAY_S, config.max_ml_per_day),
        ):
            if self.dosed_within(window) + ml > cap + 1e-9:
                raise Refused(limit, f"{self.id}: {ml} mL more would exceed {limit} {cap}")
        if self._pending is not None or self.dosing:
            raise Refused("busy", f"{self.id}: the previous dose is still running")

    async def dose(self, ml: float, *, by: str) -> None:
        """Starts a dose of `ml` within the hard caps; raises Refused otherwise.

        A chip failure around the command may or may not have dosed: the dose is
        counted, the failure recorded, and the pump asked `D,?` at once and
        stopped if it runs with no dose of ours pending.
        """
        self.check_dose(ml)
        self.commanded_by = by
        before = self.total_ml
        try:
            if before is None:
                before = self.total_ml = await self.driver.total_volume()
            self.doses.append((self._clock(), ml))
            self.last_dose_ml = ml
            await self.driver.dose(ml)
        except (BusError, DriverError) as err:
            failure = err.code, f"dose of {ml} mL: {err}"
            self.error, self.error_message = failure
            _LOGGER.warning("pump %s: %s", self.id, self.error_message)
            await self.refresh()
            await self._journal("dose", by, ml, None, unit="mL", failure=failure)
            return
        self._pending = (before, ml)
        self.dosing = True
        # The volume is confirmed by the `dose_result` event once the pump is idle.
        await self._journal("dose", by, ml, None, unit="mL")

    @property
    def in_safe_state(self) -> bool:
        # A short-dose fault leaves the pump stopped: safe, though in error.
        return self.wanted == self.safe == self.applied and not self.dosing

    async def refresh(self) -> None:
        await super().refresh()
        if self.error is None and self.fault is not None:
            self.error, self.error_message = self.fault
        if self._finished is not None:
            ml, self._finished = self._finished, None
            result = self.fault or (None, None)
            await self._journal(
                "dose_result", self.commanded_by, ml, self.delivered_ml, unit="mL", failure=result
            )

    def clear_fault(self) -> None:
        """A person checked pump and line."""
        self.fault = None

    async def _apply(self, value: float) -> None:
        _, running = await self.driver.dispensing()
        self.dosing = running
        if running and self._pending is None:
            # Nothing of ours runs: whatever started it (a restart mid-dose, a stray
            # command) is stopped.
            await self.driver.stop()
            _, self.dosing = await self.driver.dispensing()
            if self.dosing:
                raise DriverError("still_running", f"{self.id}: still dispensing after X")
        if running and self._pending is not None:
            return
        if self._pending is None and self.total_ml is not None:
            return  # idle, nothing to confirm: the total is read when a dose needs it
        self.total_ml = await self.driver.total_volume()
        if self._pending is not None:
            before, ml = self._pending
            self._pending = None
            self._finished = ml
            self.delivered_ml = round(self.total_ml - before, 3)
            if self.delivered_ml >= DELIVERED_SHARE * ml:
                self.fault = None
            else:
                message = f"{self.id}: pump total grew {self.delivered_ml} mL for a dose of {ml} mL"
                _LOGGER.warning("%s", message)
                self.fault = ("short_dose", message)

    async def to_safe(self, *, by: str) -> None:
        """Stops any dose at once (`X`), then checks the pump is idle."""
        if self._pending is not None or self.dosing:
            _LOGGER.info("%s stopped (%s)", self.id, by)
            try:
                await self.driver.stop()
            except (BusError, DriverError) as err:
                self.error, self.error_message = err.code, f"stop: {err}"
            self._pending = None
        await super().to_safe(by=by)

    def snapshot(self) -> list[list[float]]:
        return [[when, ml] for when, ml in self.doses]

    def restore(self, doses: Sequence[Sequence[float]]) -> None:
        now = self._clock()
        self.doses = deque((float(t), float(ml)) for t, ml in doses if now - float(t) < DAY_S)

    def prune(self) -> None:
        now = self._clock()
        while self.doses and now - self.doses[0][0] >= DAY_S:
            self.doses.popleft()

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "dosing": self.dosing,
            "total_ml": self.total_ml,
            "last_dose_ml": self.last_dose_ml,
            "delivered_ml": self.delivered_ml,
            "dosed_last_hour_ml": round(self.dosed_within(HOUR_S), 3),
            "dosed_last_day_ml": round(self.dosed_within(DAY_S), 3),
            "max_dose_ml": self.config.max_dose_ml,
            "max_ml_per_hour": self.config.max_ml_per_hour,
            "max_ml_per_day": self.config.max_ml_per_day,
        }


def build_actuators(
    config: ReactorConfig,
    bus: BusOwner,
    *,
    timing: Timing = DEFAULT_TIMING,
    clock: Callable[[], float] = time.time,
    log: ActuationLog | None = None,
) -> dict[str, Actuator]:
    """The reactor's actuators by name; chips shared by several outputs get one driver.
    `log` journals their actuation events (none: not journaled)."""

    def device(address: int) -> I2CDevice:
        return bus.device(address, mux_address=config.mux_address, mux_channel=config.mux_channel)

    boards: dict[int, RelayBoard] = {}
    pwms: dict[int, tuple[Pca9685, asyncio.Lock]] = {}
    actuators: dict[str, Actuator] = {}
    for spec in config.actuators:
        actuator: Actuator
        if spec.kind == "relay":
            pins = frozenset(
                a.channel
                for a in config.actuators
                if a.kind == "relay" and a.address == spec.address
            )
            board = boards.setdefault(
                spec.address, RelayBoard(Mcp23017(device(spec.address), pins))
            )
            actuator = Relay(config.id, spec, board)
        elif spec.kind == "pwm":
            if spec.address not in pwms:
                chip = Pca9685(device(spec.address), frequency_hz=spec.frequency_hz)
                pwms[spec.address] = (chip, asyncio.Lock())
            actuator = PwmChannel(config.id, spec, *pwms[spec.address])
        else:
            identity = Identity(kind="pmp", model="EZO-PMP", firmware=None)
            actuator = Pump(
                config.id, spec, PmpDriver(device(spec.address), identity, timing=timing), clock
            )
        actuator.log = log
        actuators[spec.name] = actuator
    return actuators


def chip_addresses(config: ReactorConfig) -> frozenset[int]:
    """Addresses of the reactor's relay and PWM chips: discovery never sends them EZO commands."""
    return frozenset(a.address for a in config.actuators if a.kind in ("relay", "pwm"))
