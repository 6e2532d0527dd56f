"""A reactor's configured actuators and control loops, with their hard limits.

They live in the agent's configuration file (`[[reactors.actuators]]`,
`[[reactors.loops]]`, see docs/example-config.toml and docs/safety.md) and are
validated here with voluptuous, like the rest of config.py. Nothing the API
sets can widen a limit given here: runtime settings only narrow them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import voluptuous as vol

from ..config_validators import in_range

ACTUATOR_KINDS = ("relay", "pwm", "pump")
LOOP_KINDS = ("temperature", "ph", "do")
LOOP_MODES = ("off", "manual", "auto")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_]{0,31}$"
# The input each loop kind reads: (sensor kind, quantity).
LOOP_INPUTS = {
    "temperature": ("rtd", "temperature"),
    "ph": ("ph", "ph"),
    "do": ("do", "dissolved_oxygen"),
}


@dataclass(frozen=True, slots=True)
class ActuatorConfig:
    """One output. `channel` is the relay's expander pin or the PWM chip's channel.

    `safe` is where the output goes whenever nothing may drive it: a relay's
    level (0 open, 1 closed), a PWM duty; a pump's safe state is always stopped.
    """

    name: str
    kind: str
    address: int
    channel: int = 0
    safe: float = 0.0
    max_duty: float = 1.0  # pwm
    frequency_hz: float = 200.0  # pwm
    # pump: every dose, manual or from a loop, counts against these.
    max_dose_ml: float = 5.0
    max_ml_per_hour: float = 20.0
    max_ml_per_day: float = 100.0


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """One control loop and its hard limits (fields of the other kind keep their defaults)."""

    name: str
    kind: str
    mode: str = "off"  # at the very first start; afterwards the persisted mode
    setpoint: float = 37.0
    setpoint_min: float = 20.0
    setpoint_max: float = 40.0
    max_input_age_s: float = 30.0
    # temperature: a PID drives `heater` (pwm); `heater_enable` (relay) is closed while it may.
    heater: str = ""
    heater_enable: str | None = None
    # do: a PID drives `stirrer` (pwm) between min_output and max_output; `aeration`
    # (relay) is closed while it may. Gains and output range are shared with temperature.
    stirrer: str = ""
    aeration: str | None = None
    kp: float = 0.5
    ki: float = 0.004
    kd: float = 0.0
    min_output: float = 0.0
    max_output: float = 1.0
    # ph: base raises, acid (optional) lowers.
    base_pump: str = ""
    acid_pump: str | None = None
    deadband: float = 0.05
    ml_per_unit: float = 10.0
    expected_change_per_ml: float = 0.02
    response_delay_s: float = 60.0
    unresponsive_doses: int = 3
    max_dose_ml: float = 2.0
    max_ml_per_hour: float = 10.0
    max_ml_per_day: float = 60.0
    min_interval_s: float = 60.0

    @property
    def outputs(self) -> tuple[str, ...]:
        """The actuators this loop drives."""
        names = {
            "temperature": (self.heater, self.heater_enable),
            "ph": (self.base_pump, self.acid_pump),
            "do": (self.stirrer, self.aeration),
        }[self.kind]
        return tuple(name for name in names if name)


_NAME = vol.All(str, vol.Match(NAME_PATTERN, msg="must be lowercase letters, digits or _"))
_ADDRESS = in_range(0x08, 0x77, integer=True)
_SHARE = in_range(0.0, 1.0)
_ML = in_range(0.01, 10_000.0)
_COMMON: dict[Any, Any] = {vol.Required("name"): _NAME, vol.Required("kind"): str}

_ACTUATOR_SCHEMAS = {
    "relay": vol.Schema(
        {
            **_COMMON,
            vol.Required("address"): in_range(0x20, 0x27, integer=True),
            vol.Required("channel"): in_range(0, 15, integer=True),
            vol.Optional("safe", default="off"): vol.In(("off", "on"), msg="must be off or on"),
        }
    ),
    "pwm": vol.Schema(
        {
            **_COMMON,
            vol.Required("address"): _ADDRESS,
            vol.Required("channel"): in_range(0, 15, integer=True),
            vol.Optional("safe", default=0.0): _SHARE,
            vol.Optional("max_duty", default=1.0): _SHARE,
            vol.Optional("frequency_hz", default=200.0): in_range(24, 1526),
        }
    ),
    "pump": vol.Schema(
        {
            **_COMMON,
            vol.Required("address"): _ADDRESS,
            vol.Optional("max_dose_ml", default=5.0): _ML,
            vol.Optional("max_ml_per_hour", default=20.0): _ML,
            vol.Optional("max_ml_per_day", default=100.0): _ML,
        }
    ),
}
_LOOP_COMMON: dict[Any, Any] = {
    **_COMMON,
    vol.Optional("mode"): vol.In(LOOP_MODES, msg=f"must be one of {', '.join(LOOP_MODES)}"),
    vol.Optional("setpoint"): in_range(-50, 150),
    vol.Optional("setpoint_min"): in_range(-50, 150),
    vol.Optional("setpoint_max"): in_range(-50, 150),
    vol.Optional("max_input_age_s"): in_range(0.05, 86400),
}
# The PID loops' gains (temperature and dissolved oxygen).
_PID_GAINS: dict[Any, Any] = {
    vol.Optional("kp"): in_range(0, 1000),
    vol.Optional("ki"): in_range(0, 1000),
    vol.Optional("kd"): in_range(0, 100_000),
}
_LOOP_SCHEMAS = {
    "temperature": vol.Schema(
        {
            **_LOOP_COMMON,
            vol.Required("heater"): _NAME,
            vol.Optional("heater_enable"): _NAME,
            **_PID_GAINS,
            vol.Optional("max_output"): _SHARE,
        }
    ),
    "ph": vol.Schema(
        {
            **_LOOP_COMMON,
            vol.Required("base_pump"): _NAME,
            vol.Optional("acid_pump"): _NAME,
            vol.Optional("deadband"): in_range(0, 2),
            vol.Optional("ml_per_unit"): in_range(0.001, 10_000),
            vol.Optional("expected_change_per_ml"): in_range(0.0001, 14),
            vol.Optional("response_delay_s"): in_range(0, 86400),
            vol.Optional("unresponsive_doses"): in_range(1, 100, integer=True),
            vol.Optional("max_dose_ml"): _ML,
            vol.Optional("max_ml_per_hour"): _ML,
            vol.Optional("max_ml_per_day"): _ML,
            vol.Optional("min_interval_s"): in_range(0, 86400),
        }
    ),
    "do": vol.Schema(
        {
            **_LOOP_COMMON,
            vol.Required("stirrer"): _NAME,
            vol.Optional("aeration"): _NAME,
            **_PID_GAINS,
            vol.Optional("min_output"): _SHARE,
            vol.Optional("max_output"): _SHARE,
        }
    ),
}
# Defaults sized for each kind: pH units; DO in mg/L, gains per mg/L, the stirrer never
# below a mixing minimum.
_KIND_DEFAULTS: dict[str, dict[str, float]] = {
    "ph": {"setpoint": 7.0, "setpoint_min": 6.0, "setpoint_max": 8.0},
    "do": {
        "setpoint": 5.0,
        "setpoint_min": 1.0,
        "setpoint_max": 10.0,
        "kp": 0.1,
        "ki": 0.002,
        "min_output": 0.2,
        "max_output": 0.8,
    },
}


def _by_kind(schemas: dict[str, vol.Schema]) -> Callable[[Any], dict[str, Any]]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise vol.Invalid("must be a table")
        kind = value.get("kind")
        if kind not in schemas:
            raise vol.Invalid(f"must be one of {', '.join(schemas)}", ["kind"])
        result: dict[str, Any] = schemas[kind](value)
        return result

    return check


ACTUATOR = _by_kind(_ACTUATOR_SCHEMAS)
LOOP = _by_kind(_LOOP_SCHEMAS)


def actuator_config(data: dict[str, Any]) -> ActuatorConfig:
    """An ActuatorConfig from a validated `[[reactors.actuators]]` table."""
    values = dict(data)
    if values["kind"] == "relay":
        values["safe"] = 1.0 if values["safe"] == "on" else 0.0
    return ActuatorConfig(**values)


def loop_config(data: dict[str, Any]) -> LoopConfig:
    """A LoopConfig from a validated `[[reactors.loops]]` table."""
    return LoopConfig(**{**_KIND_DEFAULTS.get(data["kind"], {}), **data})


# The actuator kind each loop key must name.
_OUTPUT_KINDS = {
    "heater": "pwm",
    "heater_enable": "relay",
    "stirrer": "pwm",
    "aeration": "relay",
    "base_pump": "pump",
    "acid_pump": "pump",
}


def check_reactor(
    actuators: list[dict[str, Any]], loops: list[dict[str, Any]], path: list[Any]
) -> None:
    """Rules across one reactor's actuators and loops; vol.Invalid with the offending path."""
    by_name = _check_actuators(actuators, path)
    used: set[str] = set()
    names: set[str] = set()
    for index, raw in enumerate(loops):
        where = [*path, "loops", index]
        if raw["name"] in names:
            raise vol.Invalid(f"duplicate loop name {raw['name']!r}", [*where, "name"])
        names.add(raw["name"])
        loop = loop_config(raw)
        if not loop.setpoint_min <= loop.setpoint <= loop.setpoint_max:
            raise vol.Invalid("must be within setpoint_min and setpoint_max", [*where, "setpoint"])
        if loop.min_output >= loop.max_output:
            raise vol.Invalid("must be below max_output", [*where, "min_output"])
        for key, kind in _OUTPUT_KINDS.items():
            name = raw.get(key)
            if name is None:
                continue
            actuator = by_name.get(name)
            if actuator is None or actuator["kind"] != kind:
                raise vol.Invalid(f"must name a {kind} actuator of this reactor", [*where, key])
            if name in used:
                raise vol.Invalid("is already driven by another loop", [*where, key])
            used.add(name)
            # The PID's range must fit the PWM output's own hard limit.
            if kind == "pwm" and loop.max_output > actuator["max_duty"]:
                raise vol.Invalid(
                    f"must not exceed the max_duty {actuator['max_duty']} of {name!r}",
                    [*where, "max_output"],
                )


def _check_actuators(actuators: list[dict[str, Any]], path: list[Any]) -> dict[str, dict[str, Any]]:
    """The reactor's actuators by name, once names and chip channels are unique."""
    by_name: dict[str, dict[str, Any]] = {}
    places: set[tuple[str, int, int]] = set()
    for index, actuator in enumerate(actuators):
        where = [*path, "actuators", index]
        if actuator["name"] in by_name:
            raise vol.Invalid(f"duplicate actuator name {actuator['name']!r}", [*where, "name"])
        by_name[actuator["name"]] = actuator
        if actuator["kind"] == "pwm" and actuator["safe"] > actuator["max_duty"]:
            raise vol.Invalid("must not exceed max_duty", [*where, "safe"])
        place = (actuator["kind"], actuator["address"], actuator.get("channel", 0))
        if place in places:
            raise vol.Invalid("another actuator uses the same chip and channel", where)
        places.add(place)
    return by_name
