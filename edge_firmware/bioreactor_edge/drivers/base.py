"""The one small interface every chip driver implements."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..bus import I2CDevice
from ..models import Measurement, Quality, Quantity


class DriverError(Exception):
    """A chip answered, but not with a usable result; `code` says why.

    Codes: "timeout", "syntax_error", "no_data", "garbage", and "no_probe" (a
    circuit reporting that its probe is missing, e.g. the EZO-RTD's -1023).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Identity:
    """What a chip is: driver kind, model name and firmware version if it reports one."""

    kind: str
    model: str
    firmware: str | None


@dataclass(frozen=True, slots=True)
class Timing:
    """EZO processing times; the simulator uses a scaled-down one so tests can sample fast."""

    read_s: float = 0.9
    command_s: float = 0.3
    poll_s: float = 0.05
    timeout_s: float = 3.0

    def scaled(self, speed: float) -> Timing:
        """This timing for chips `speed` times faster than real ones (simulated chips).

        The timeout stays generous whatever the speed: a loaded test machine
        must not turn slowness into errors.
        """
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        return Timing(
            read_s=self.read_s / speed,
            command_s=self.command_s / speed,
            poll_s=self.poll_s / speed,
            timeout_s=max(self.timeout_s / speed, 1.0),
        )


# The real circuits' timing (a module constant: defaults must not be built per call).
DEFAULT_TIMING = Timing()


class Driver(ABC):
    """Reads one chip: `start()` a measurement, wait `ready_after_s`, then `collect()`."""

    kind: ClassVar[str]
    min_interval_s: ClassVar[float]
    compensated: ClassVar[bool] = False
    quantities: tuple[Quantity, ...]

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        self.device = device
        self.identity = identity
        self.timing = timing

    async def setup(self) -> None:
        """Prepares the chip once after identification (most chips need nothing)."""
        return

    @abstractmethod
    async def start(self, temperature_c: float | None) -> None:
        """Begins one measurement, compensated for `temperature_c` where the chip can."""

    @property
    @abstractmethod
    def ready_after_s(self) -> float:
        """How long after `start()` the result is expected."""

    @abstractmethod
    async def collect(self) -> list[Measurement]:
        """Finishes the measurement; raises DriverError when the chip's answer is unusable."""

    def measurement(self, quantity: Quantity, value: float) -> Measurement:
        """`value` as a Measurement of `quantity`, SUSPECT outside the chip's range."""
        if not math.isfinite(value):
            raise DriverError("garbage", f"{self.kind} {quantity.key} is not a number: {value}")
        in_range = quantity.minimum <= value <= quantity.maximum
        return Measurement(quantity.key, value, Quality.GOOD if in_range else Quality.SUSPECT)
