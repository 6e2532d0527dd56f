"""Voluptuous validators shared by the configuration file's schemas (config.py and
control/config.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voluptuous as vol


def in_range(
    minimum: float, maximum: float, *, integer: bool = False, hexadecimal: bool = False
) -> Callable[[Any], Any]:
    """A validator for a number (or integer) in [minimum, maximum]."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    low, high = (f"0x{minimum:02x}", f"0x{maximum:02x}") if hexadecimal else (minimum, maximum)
    problem = f"must be {'an integer' if integer else 'a number'} between {low} and {high}"

    def check(value: Any) -> Any:
        # TOML booleans are Python ints; a switch is never a number here.
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise vol.Invalid(problem)
        if not minimum <= value <= maximum:
            raise vol.Invalid(problem)
        return value

    return check
