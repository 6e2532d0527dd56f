"""The integration's delivery pipeline outside Home Assistant, for light processes
(the fault harness's consumer, the drain benchmark).

The integration's package `__init__` imports Home Assistant, which takes a second
per start; registering a bare package first lets its HA-free modules (api, archive,
cursor, delivery) load on their own.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def install() -> None:
    """Makes `custom_components.bioreactor.<module>` importable without its __init__."""
    if "custom_components.bioreactor" in sys.modules:
        return
    package = types.ModuleType("custom_components.bioreactor")
    package.__path__ = [str(REPO / "custom_components" / "bioreactor")]
    sys.modules["custom_components.bioreactor"] = package


async def run_blocking(job: Callable[..., Any], *args: Any) -> Any:
    """The pipeline's `run_blocking`, as `hass.async_add_executor_job` is in HA."""
    return await asyncio.get_running_loop().run_in_executor(None, job, *args)
