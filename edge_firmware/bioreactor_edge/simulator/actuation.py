"""The simulated reactor's actuators: a relay board on an MCP23017 and a PCA9685
driving the heater and the stirrer, wired to the physical model.

Wiring (what a build of the product uses, and what the agent's tests configure):
- MCP23017 at 0x20, pin 0: heater relay, pin 1: stirrer relay, pin 2: aeration
  valve (the model has no aeration; its state is only recorded).
- PCA9685 at 0x40, channel 0: heater power (a solid-state relay behind the
  mechanical one), channel 1: stirrer motor speed.
The heater heats only while its relay is closed *and* its channel is on, so
either chip alone can switch it off. The EZO-PMP at 0x67 doses base itself
(see ezo.py). Nothing here is imported from the agent's drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .mcp23017 import Mcp23017Chip
from .pca9685 import Pca9685Chip
from .physics import ReactorModel
from .virtual_bus import VirtualBus

EXPANDER_ADDRESS = 0x20
PWM_ADDRESS = 0x40
HEATER_PIN, STIRRER_PIN, AERATION_PIN = 0, 1, 2
HEATER_CHANNEL, STIRRER_CHANNEL = 0, 1
STIRRER_MAX_RPM = 1000.0


@dataclass(slots=True)
class Actuation:
    """The reactor's actuator chips and what they drive right now."""

    model: ReactorModel
    relays: int = 0
    duties: dict[int, float] = field(default_factory=dict)
    expander: Mcp23017Chip = field(init=False)
    pwm: Pca9685Chip = field(init=False)

    def __post_init__(self) -> None:
        self.expander = Mcp23017Chip(EXPANDER_ADDRESS, on_change=self._relays_changed)
        self.pwm = Pca9685Chip(PWM_ADDRESS, on_change=self._duty_changed)
        self._apply()

    def relay(self, pin: int) -> bool:
        return bool(self.relays >> pin & 1)

    def _relays_changed(self, driven: int) -> None:
        self.relays = driven
        self._apply()

    def _duty_changed(self, channel: int, duty: float) -> None:
        self.duties[channel] = duty
        self._apply()

    def _apply(self) -> None:
        # Called from the chips' constructors too, before both exist. The model
        # first catches up to now, so the old output counts until this instant.
        self.model.state()
        heater = self.duties.get(HEATER_CHANNEL, 0.0) if self.relay(HEATER_PIN) else 0.0
        stirrer = self.duties.get(STIRRER_CHANNEL, 0.0) if self.relay(STIRRER_PIN) else 0.0
        self.model.heater_power = heater
        self.model.stir_rpm = stirrer * STIRRER_MAX_RPM


def add_actuators(bus: VirtualBus, model: ReactorModel) -> Actuation:
    """Connects the relay expander and the PWM chip to `bus`, driving `model`."""
    actuation = Actuation(model)
    bus.add(actuation.expander)
    bus.add(actuation.pwm)
    return actuation
