"""Constants for the Bioreactor integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "bioreactor"
LOGGER = logging.getLogger(__package__)
