"""The agent's control loops: read the sampler's last values, decide, drive actuators.

Runs on the agent whether or not Home Assistant is there: nothing here waits
for a client. Each tick every loop in `auto` reads its input (value, time,
trust) and either drives its outputs or, when the input is missing, stale or
not good (or the doser is in alarm), puts them in their safe state. Loops that
are `off` hold their outputs safe; `manual` leaves them to API commands. Every
actuator is driven to what it should be at every tick, so a chip that reset is
corrected within one tick.

Loop settings (mode, setpoint, narrowed limits) and dose ledgers are persisted
atomically in `control.json` under the data directory before a change is
answered, so a power cycle resumes them. Settings can narrow the configured
hard limits, never widen them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..actuators import Actuator, Pump, Refused
from ..config import ReactorConfig
from ..durable import write_atomically
from .config import LOOP_INPUTS, LOOP_MODES, LoopConfig
from .dosing import Direction, Doser, DosingLimits, DosingSettings, Input
from .pid import Pid, PidGains

_LOGGER = logging.getLogger(__name__)

STATE_VERSION = 1
# No control tick finished for this long: the controller is stalled (a tick stuck on the
# bus, a blocked event loop). Far above a tick's length: every actuator answered in time.
STALL_S = 20.0
# (reactor id, sensor kind, quantity) -> the newest reading, or None.
InputReader = Callable[[str, str, str], Input | None]
# Limits a setting may narrow: "max" ones may only go lower, "min" ones only higher.
NARROWABLE: dict[str, dict[str, str]] = {
    "temperature": {"max_output": "max", "max_input_age_s": "max"},
    "do": {"min_output": "min", "max_output": "max", "max_input_age_s": "max"},
    "ph": {
        "max_dose_ml": "max",
        "max_ml_per_hour": "max",
        "max_ml_per_day": "max",
        "min_interval_s": "min",
        "max_input_age_s": "max",
    },
}


class StateUnwritable(Exception):
    """The control state could not be persisted (full disk, I/O error)."""


@dataclass(slots=True)
class LoopSettings:
    """What the API may change; `limits` holds only narrowed values."""

    mode: str
    setpoint: float
    limits: dict[str, float] = field(default_factory=dict)


class Loop:
    """One loop of one reactor; subclasses decide what its outputs do in `auto`."""

    def __init__(
        self, reactor_id: str, config: LoopConfig, outputs: dict[str, Actuator], read: InputReader
    ) -> None:
        self.id = f"{reactor_id}-{config.name}"
        self.reactor_id = reactor_id
        self.config = config
        self.outputs = outputs
        self._read = read
        self.settings = LoopSettings(config.mode, config.setpoint)
        self.state = "off"  # off | manual | running | lockout
        self.reason: str | None = None
        self.input: Input | None = None
        for actuator in outputs.values():
            actuator.loop = self.id

    def limit(self, key: str) -> float:
        value: float = self.settings.limits.get(key, getattr(self.config, key))
        return value

    def read_input(self) -> Input | None:
        kind, quantity = LOOP_INPUTS[self.config.kind]
        self.input = self._read(self.reactor_id, kind, quantity)
        return self.input

    def input_problem(self, now_s: float) -> str | None:
        """Why the input cannot be trusted now, or None."""
        reading = self.read_input()
        if reading is None:
            return "input_missing"
        if not reading.good or not math.isfinite(reading.value):
            return "input_error"
        if now_s - reading.time_s > self.limit("max_input_age_s"):
            return "input_stale"
        return None

    async def step(self, now_s: float) -> None:
        mode = self.settings.mode
        if mode == "off":
            self.state, self.reason = "off", None
            await self.all_safe(by=f"loop:{self.id}:off")
        elif mode == "manual":
            self.state, self.reason = "manual", None
            for actuator in self.outputs.values():
                await actuator.refresh()
        else:
            await self.run(now_s)
            failed = [a.id for a in self.outputs.values() if a.error is not None]
            if failed and self.state == "running":
                # One output failing: the others must not carry on alone.
                await self.lockout(f"output_error:{failed[0]}")

    async def all_safe(self, *, by: str) -> None:
        for actuator in self.outputs.values():
            await actuator.to_safe(by=by)

    async def lockout(self, reason: str) -> None:
        if self.reason != reason:
            _LOGGER.warning("loop %s locked out: %s", self.id, reason)
        self.reset()
        await self.all_safe(by=f"lockout:{reason}")
        # Shown once the outputs are where a lockout puts them.
        self.state, self.reason = "lockout", reason

    def reset(self) -> None:
        """Forgets controller history (after a lockout or a mode change)."""

    async def run(self, now_s: float) -> None:
        raise NotImplementedError

    def output_json(self) -> dict[str, Any]:
        return {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.settings.mode,
            "setpoint": self.settings.setpoint,
            "limits": dict(self.settings.limits),
        }

    def restore(self, data: dict[str, Any]) -> None:
        config = self.config
        if data.get("mode") in LOOP_MODES:
            self.settings.mode = data["mode"]
        setpoint = data.get("setpoint")
        if (
            isinstance(setpoint, int | float)
            and config.setpoint_min <= setpoint <= config.setpoint_max
        ):
            self.settings.setpoint = float(setpoint)
        limits = data.get("limits", {})
        for key, direction in NARROWABLE[config.kind].items():
            value = limits.get(key) if isinstance(limits, dict) else None
            if isinstance(value, int | float):
                # A hard limit tightened in the configuration since wins.
                hard = getattr(config, key)
                narrowed = min(value, hard) if direction == "max" else max(value, hard)
                if narrowed != hard:
                    self.settings.limits[key] = float(narrowed)

    def as_json(self) -> dict[str, Any]:
        config = self.config
        hard = {key: getattr(config, key) for key in NARROWABLE[config.kind]}
        return {
            "id": self.id,
            "name": config.name,
            "kind": config.kind,
            "mode": self.settings.mode,
            "state": self.state,
            "reason": self.reason,
            "setpoint": self.settings.setpoint,
            "setpoint_min": config.setpoint_min,
            "setpoint_max": config.setpoint_max,
            "limits": {key: self.limit(key) for key in hard},
            "hard_limits": hard,
            "input": None
            if self.input is None
            else {"value": self.input.value, "time_s": self.input.time_s, "good": self.input.good},
            "outputs": [a.id for a in self.outputs.values()],
            **self.output_json(),
        }


class PidLoop(Loop):
    """A PID driving one PWM output, its enabling relay closed while it runs.

    Temperature: the heater (and `heater_enable`) from the RTD. DO: the stirrer (and
    `aeration`) from the dissolved oxygen reading, never below `min_output`.
    """

    def __init__(
        self, reactor_id: str, config: LoopConfig, outputs: dict[str, Actuator], read: InputReader
    ) -> None:
        super().__init__(reactor_id, config, outputs, read)
        self.pid = Pid(
            PidGains(config.kp, config.ki, config.kd),
            output_min=config.min_output,
            output_max=config.max_output,
        )
        self.drive, self.enable = (
            (config.heater, config.heater_enable)
            if config.kind == "temperature"
            else (config.stirrer, config.aeration)
        )
        self.output: float | None = None
        self._last_s: float | None = None

    def reset(self) -> None:
        self.pid.reset()
        self.output = None
        self._last_s = None

    async def run(self, now_s: float) -> None:
        problem = self.input_problem(now_s)
        if problem is not None:
            await self.lockout(problem)
            return
        assert self.input is not None
        last, self._last_s = self._last_s, now_s
        self.pid.output_min = self.limit("min_output")
        self.pid.output_max = self.limit("max_output")
        if last is None or now_s <= last:
            # First step (or the clock went back): nothing to integrate over yet.
            previous = self.output if self.output is not None else self.pid.output_min
            self.output = min(self.pid.output_max, max(self.pid.output_min, previous))
        else:
            self.output = self.pid.update(self.settings.setpoint, self.input.value, now_s - last)
        try:
            await self.outputs[self.drive].set(self.output, by=f"loop:{self.id}")
        except Refused as err:  # the configuration keeps max_output within max_duty
            await self.lockout(f"output_refused:{err.limit}")
            return
        self.state, self.reason = "running", None
        if self.enable:
            await self.outputs[self.enable].set(1.0, by=f"loop:{self.id}")

    def output_json(self) -> dict[str, Any]:
        return {"output": self.output, "integral": self.pid.integral}


class PhLoop(Loop):
    """Base (and optional acid) dosing through one Doser per pump."""

    def __init__(
        self, reactor_id: str, config: LoopConfig, outputs: dict[str, Actuator], read: InputReader
    ) -> None:
        super().__init__(reactor_id, config, outputs, read)
        self.dosers: dict[str, Doser] = {}
        for name, direction in (
            (config.base_pump, Direction.RAISES),
            (config.acid_pump, Direction.LOWERS),
        ):
            if name:
                self.dosers[name] = Doser(self._dosing_settings(), self._dosing_limits(), direction)
        self.decisions: dict[str, str] = {}

    def _dosing_settings(self) -> DosingSettings:
        c = self.config
        return DosingSettings(
            setpoint=self.settings.setpoint,
            deadband=c.deadband,
            ml_per_unit=c.ml_per_unit,
            expected_change_per_ml=c.expected_change_per_ml,
            response_delay_s=c.response_delay_s,
            unresponsive_doses=c.unresponsive_doses,
        )

    def _dosing_limits(self) -> DosingLimits:
        return DosingLimits(
            max_dose_ml=self.limit("max_dose_ml"),
            max_ml_per_hour=self.limit("max_ml_per_hour"),
            max_ml_per_day=self.limit("max_ml_per_day"),
            min_interval_s=self.limit("min_interval_s"),
            max_input_age_s=self.limit("max_input_age_s"),
            min_dose_ml=min(0.1, self.limit("max_dose_ml")),
        )

    def clear_alarm(self) -> None:
        """A person checked pumps and lines: dosing may resume."""
        for name, doser in self.dosers.items():
            doser.clear_alarm()
            pump = self.outputs[name]
            if isinstance(pump, Pump):
                pump.clear_fault()

    async def run(self, now_s: float) -> None:
        settings, limits = self._dosing_settings(), self._dosing_limits()
        reading = self.read_input()
        locked: str | None = None
        for name, doser in self.dosers.items():
            doser.settings, doser.limits = settings, limits
            pump = self.outputs[name]
            assert isinstance(pump, Pump)
            decision = doser.decide(now_s, reading)
            self.decisions[name] = decision.reason
            if decision.locked_out:
                locked = decision.reason.removeprefix("lockout:")
                continue
            if decision.ml <= 0 or reading is None:
                await pump.refresh()
                continue
            try:
                await pump.dose(decision.ml, by=f"loop:{self.id}")
            except Refused as err:
                self.decisions[name] = err.limit
                await pump.refresh()
                continue
            doser.record_dose(now_s, decision.ml, reading.value)
        if locked is not None:
            await self.lockout(locked)
        else:
            self.state, self.reason = "running", None

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "dosers": {n: d.snapshot() for n, d in self.dosers.items()}}

    def restore(self, data: dict[str, Any]) -> None:
        super().restore(data)
        saved = data.get("dosers", {})
        for name, doser in self.dosers.items():
            if isinstance(saved, dict) and isinstance(saved.get(name), dict):
                doser.restore(saved[name])
                if doser.alarm is not None:
                    _LOGGER.warning(
                        "loop %s: pump %s still in alarm (%s)", self.id, name, doser.alarm
                    )

    def output_json(self) -> dict[str, Any]:
        return {
            "alarm": next((d.alarm for d in self.dosers.values() if d.alarm), None),
            "decisions": dict(self.decisions),
        }


class Controller:
    """Every loop and actuator of the agent, their ticks, commands and persisted state."""

    def __init__(
        self,
        reactors: Sequence[tuple[ReactorConfig, dict[str, Actuator]]],
        read: InputReader,
        state_path: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._state_path = state_path
        self.actuators: dict[str, Actuator] = {}
        self.loops: dict[str, Loop] = {}
        self._dirty = False
        self._lock = asyncio.Lock()
        # time.monotonic() of the last finished tick (or of the start of ticking).
        self.ticked_at: float | None = None
        self.reactor_ids = [config.id for config, _ in reactors]
        for config, actuators in reactors:
            for actuator in actuators.values():
                self.actuators[actuator.id] = actuator
            for loop_config in config.loops:
                outputs = {name: actuators[name] for name in loop_config.outputs}
                kind = PhLoop if loop_config.kind == "ph" else PidLoop
                loop = kind(config.id, loop_config, outputs, read)
                self.loops[loop.id] = loop

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        """Every actuator to its safe state, then the persisted settings back."""
        for actuator in self.actuators.values():
            await actuator.to_safe(by="start")
        self._load()

    async def stop(self) -> None:
        """Every actuator to its safe state (the agent is going away)."""
        async with self._lock:
            for actuator in self.actuators.values():
                await actuator.to_safe(by="shutdown")

    async def run(self, period_s: float) -> None:
        self.ticked_at = time.monotonic()  # a first tick that never ends is a stall too
        while True:
            try:
                await self.tick()
            except Exception:
                # A bug must not stop control for good: outputs are made safe, then retried.
                _LOGGER.exception("control tick failed")
                for actuator in self.actuators.values():
                    with contextlib.suppress(Exception):
                        await actuator.to_safe(by="internal_error")
            self.ticked_at = time.monotonic()
            await asyncio.sleep(period_s)

    def stalled(self) -> bool:
        """No tick finished for `STALL_S` since ticking began (the watchdog's criterion)."""
        return self.ticked_at is not None and time.monotonic() - self.ticked_at > STALL_S

    async def tick(self) -> None:
        async with self._lock:
            now = self._clock()
            driven: set[str] = set()
            for loop in self.loops.values():
                before = self._doses()
                await loop.step(now)
                driven.update(a.id for a in loop.outputs.values())
                if self._doses() != before:
                    self._dirty = True
            for actuator in self.actuators.values():
                if actuator.id not in driven:
                    await actuator.refresh()
                if isinstance(actuator, Pump):
                    actuator.prune()
            if self._dirty:
                await self._save()

    def _doses(self) -> int:
        return sum(len(a.doses) for a in self.actuators.values() if isinstance(a, Pump))

    # -- commands (the API) ------------------------------------------------------

    def loop(self, loop_id: str) -> Loop:
        return self.loops[loop_id]

    def actuator(self, actuator_id: str) -> Actuator:
        return self.actuators[actuator_id]

    async def configure(self, loop_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Changes a loop's mode, setpoint or limits, all or nothing; KeyError: no such loop.

        Raises Refused naming the key or the hard limit a value falls outside of,
        and StateUnwritable (nothing changed) when the new settings cannot be
        persisted: a change that a restart would undo is not made.
        """
        loop = self.loops[loop_id]
        settings = _checked(loop, changes)
        async with self._lock:
            old_settings = loop.settings
            old_mode = old_settings.mode
            loop.settings = settings
            if not await self._save():
                loop.settings = old_settings
                raise StateUnwritable(f"cannot persist the control state in {self._state_path}")
            if changes.get("clear_alarm") is True and isinstance(loop, PhLoop):
                loop.clear_alarm()
                self._dirty = True
            if settings.mode != old_mode:
                _LOGGER.info("loop %s: %s -> %s", loop.id, old_mode, settings.mode)
                loop.reset()
                if settings.mode != "auto":
                    await loop.all_safe(by=f"loop:{loop.id}:{settings.mode}")
                loop.state = settings.mode if settings.mode != "auto" else "running"
        return loop.as_json()

    def _free(self, actuator: Actuator) -> None:
        loop = self.loops.get(actuator.loop) if actuator.loop else None
        if loop is not None and loop.settings.mode != "manual":
            raise Refused(
                "loop_mode",
                f"{actuator.id} is driven by loop {loop.id} (mode {loop.settings.mode}); "
                "set the loop to manual first",
            )

    async def command(self, actuator_id: str, value: float) -> dict[str, Any]:
        """Sets a relay or PWM output by hand; KeyError: no such actuator."""
        actuator = self.actuators[actuator_id]
        if isinstance(actuator, Pump):
            raise Refused("kind", f"{actuator.id} is a pump: dose a volume instead")
        self._free(actuator)
        actuator.check(value)
        async with self._lock:
            await actuator.set(value, by="api")
        return actuator.as_json()

    async def dose(self, actuator_id: str, ml: float) -> dict[str, Any]:
        """Doses by hand (priming, a correction); KeyError: no such actuator."""
        actuator = self.actuators[actuator_id]
        if not isinstance(actuator, Pump):
            raise Refused("kind", f"{actuator.id} is not a pump")
        self._free(actuator)
        async with self._lock:
            await actuator.dose(ml, by="api")
            await self._save()
        return actuator.as_json()

    async def emergency_stop(self, reactor_id: str) -> dict[str, Any]:
        """Every loop of the reactor off (persisted) and every actuator in its safe state.

        KeyError for an unknown reactor.
        """
        if reactor_id not in self.reactor_ids:
            raise KeyError(reactor_id)
        actuators = [a for a in self.actuators.values() if a.reactor_id == reactor_id]
        loops = [loop for loop in self.loops.values() if loop.reactor_id == reactor_id]
        async with self._lock:
            for loop in loops:
                loop.settings.mode = "off"
                loop.state, loop.reason = "off", "emergency_stop"
                loop.reset()
            await self._save()
            for actuator in actuators:
                await actuator.to_safe(by="emergency_stop")
        _LOGGER.warning("emergency stop of reactor %s", reactor_id)
        return self.reactor_json(reactor_id)

    # -- status ------------------------------------------------------------------

    def reactor_json(self, reactor_id: str) -> dict[str, Any]:
        return {
            "actuators": [
                a.as_json() for a in self.actuators.values() if a.reactor_id == reactor_id
            ],
            "loops": [x.as_json() for x in self.loops.values() if x.reactor_id == reactor_id],
        }

    def problems(self) -> list[str]:
        problems = [f"actuator_error:{a.id}" for a in self.actuators.values() if a.error]
        if self.stalled():
            problems.append("control_stalled")
        for loop in self.loops.values():
            if loop.state == "lockout":
                problems.append(f"loop_lockout:{loop.id}")
            if isinstance(loop, PhLoop) and any(d.alarm for d in loop.dosers.values()):
                problems.append(f"dosing_alarm:{loop.id}")
        return problems

    # -- persistence ---------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "loops": {loop.id: loop.snapshot() for loop in self.loops.values()},
            "pumps": {a.id: a.snapshot() for a in self.actuators.values() if isinstance(a, Pump)},
        }

    async def _save(self) -> bool:
        """Writes the state; False (and retried at the next tick) when it cannot."""
        self._dirty = False
        text = json.dumps(self._snapshot(), indent=1, sort_keys=True)
        try:
            await asyncio.to_thread(write_atomically, self._state_path, text)
        except OSError as err:
            self._dirty = True
            _LOGGER.warning("cannot persist control state to %s: %s", self._state_path, err)
            return False
        return True

    def _load(self) -> None:
        data = read_state(self._state_path)
        if data is None:
            return
        loops, pumps = data.get("loops", {}), data.get("pumps", {})
        for loop in self.loops.values():
            saved = loops.get(loop.id) if isinstance(loops, dict) else None
            if isinstance(saved, dict):
                try:
                    loop.restore(saved)
                except (KeyError, TypeError, ValueError) as err:
                    _LOGGER.warning(
                        "control state of %s unusable (%s); as configured", loop.id, err
                    )
        for actuator in self.actuators.values():
            saved = pumps.get(actuator.id) if isinstance(pumps, dict) else None
            if isinstance(actuator, Pump) and isinstance(saved, list):
                with contextlib.suppress(TypeError, ValueError):
                    actuator.restore(saved)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refused(key, f"{key} must be a finite number")
    return float(value)


def read_state(path: Path) -> dict[str, Any] | None:
    """The persisted control state; None when there is none or it is unusable (set aside)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        problem = str(err)
    else:
        if isinstance(data, dict) and data.get("version") == STATE_VERSION:
            return data
        problem = "unknown format"
    # Safe either way: loops start as configured, outputs are already safe.
    _LOGGER.warning(
        "control state %s unusable (%s); starting from the configuration", path, problem
    )
    with contextlib.suppress(OSError):
        path.replace(path.with_suffix(".corrupt"))
    return None


def _checked(loop: Loop, changes: dict[str, Any]) -> LoopSettings:
    """The loop's settings with `changes` applied, or Refused naming what is wrong."""
    config = loop.config
    unknown = set(changes) - {"mode", "setpoint", "limits", "clear_alarm"}
    if unknown:
        raise Refused(sorted(unknown)[0], f"unknown setting {sorted(unknown)[0]!r}")
    settings = LoopSettings(loop.settings.mode, loop.settings.setpoint, dict(loop.settings.limits))
    if "mode" in changes:
        if changes["mode"] not in LOOP_MODES:
            raise Refused("mode", f"mode must be one of {', '.join(LOOP_MODES)}")
        settings.mode = changes["mode"]
    if "setpoint" in changes:
        settings.setpoint = _checked_setpoint(config, changes["setpoint"])
    if "clear_alarm" in changes and not isinstance(changes["clear_alarm"], bool):
        raise Refused("clear_alarm", "clear_alarm must be true or false")
    _narrow(config, changes.get("limits", {}), settings.limits)
    return settings


def _checked_setpoint(config: LoopConfig, raw: Any) -> float:
    setpoint = _number("setpoint", raw)
    if setpoint < config.setpoint_min:
        raise Refused(
            "setpoint_min", f"setpoint {setpoint} is below setpoint_min {config.setpoint_min}"
        )
    if setpoint > config.setpoint_max:
        raise Refused(
            "setpoint_max", f"setpoint {setpoint} exceeds setpoint_max {config.setpoint_max}"
        )
    return setpoint


def _narrow(config: LoopConfig, limits: Any, narrowed: dict[str, float]) -> None:
    """Applies requested limits to `narrowed`; Refused for any that would widen a hard one."""
    if not isinstance(limits, dict):
        raise Refused("limits", "limits must be an object")
    allowed = NARROWABLE[config.kind]
    for key, raw in limits.items():
        if key not in allowed:
            raise Refused(
                key, f"{key} is not a limit of a {config.kind} loop ({', '.join(allowed)})"
            )
        value = _number(key, raw)
        hard = float(getattr(config, key))
        if allowed[key] == "max" and not 0 < value <= hard:
            raise Refused(key, f"{key} {value} is outside the hard limit (0, {hard}]")
        if allowed[key] == "min" and value < hard:
            raise Refused(key, f"{key} {value} is below the hard limit {hard}")
        if value == hard:
            narrowed.pop(key, None)
        else:
            narrowed[key] = value
    if "min_output" in allowed:
        low = narrowed.get("min_output", config.min_output)
        high = narrowed.get("max_output", config.max_output)
        if low >= high:
            raise Refused("min_output", f"min_output {low} must stay below max_output {high}")
