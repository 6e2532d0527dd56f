"""Every simulated chip model, importable from one place."""

from __future__ import annotations

from .ads1115 import Ads1115Chip
from .base import Faults, SimChip
from .eeprom import Eeprom24c256
from .ezo import EzoChip
from .sht4x import Sht4xChip
from .tca9548a import Tca9548aMux

__all__ = [
    "Ads1115Chip",
    "Eeprom24c256",
    "EzoChip",
    "Faults",
    "Sht4xChip",
    "SimChip",
    "Tca9548aMux",
]
