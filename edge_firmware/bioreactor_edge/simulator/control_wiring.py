"""The agent configuration of the simulated reactor's outputs (`simulate --control`).

Matches the wiring of actuation.py: relays on the MCP23017 at 0x20, heater and
stirrer power on the PCA9685 at 0x40, the base pump being the standard set's
EZO-PMP at 0x67. Loops hold the culture's temperature and pH and start in
`auto`, so a simulated lab controls from its first second, as a configured
board resumes its persisted modes.
"""

from __future__ import annotations

from ..control.config import ActuatorConfig, LoopConfig
from .actuation import (
    AERATION_PIN,
    EXPANDER_ADDRESS,
    HEATER_CHANNEL,
    HEATER_PIN,
    PWM_ADDRESS,
    STIRRER_CHANNEL,
    STIRRER_PIN,
)
from .physics import Culture

PUMP_ADDRESS = 0x67

ACTUATORS = (
    ActuatorConfig("heater_enable", "relay", EXPANDER_ADDRESS, channel=HEATER_PIN),
    ActuatorConfig("stirrer_enable", "relay", EXPANDER_ADDRESS, channel=STIRRER_PIN, safe=1.0),
    ActuatorConfig("aeration", "relay", EXPANDER_ADDRESS, channel=AERATION_PIN),
    ActuatorConfig("heater", "pwm", PWM_ADDRESS, channel=HEATER_CHANNEL, max_duty=0.9),
    ActuatorConfig("stirrer", "pwm", PWM_ADDRESS, channel=STIRRER_CHANNEL, safe=0.3, max_duty=0.8),
    ActuatorConfig(
        "base", "pump", PUMP_ADDRESS, max_dose_ml=3.0, max_ml_per_hour=30.0, max_ml_per_day=200.0
    ),
)


def loops_for(culture: Culture) -> tuple[LoopConfig, ...]:
    """Temperature and pH loops holding what `culture` grows best at."""
    return (
        LoopConfig(
            "temperature",
            "temperature",
            mode="auto",
            setpoint=culture.temperature_c,
            setpoint_min=culture.temperature_c - 7.0,
            setpoint_max=culture.temperature_c + 3.0,
            heater="heater",
            heater_enable="heater_enable",
            kp=0.2,
            ki=0.0006,
            max_output=0.9,
        ),
        LoopConfig(
            "ph",
            "ph",
            mode="auto",
            setpoint=culture.ph,
            setpoint_min=culture.ph - 0.5,
            setpoint_max=culture.ph + 0.5,
            base_pump="base",
            max_dose_ml=2.0,
            max_ml_per_hour=10.0,
            max_ml_per_day=60.0,
            min_interval_s=120.0,
        ),
    )
