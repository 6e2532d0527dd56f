"""Atlas Scientific EZO circuits (pH, DO, ORP, EC, RTD, PMP) in I2C mode.

A command is ASCII written to the circuit; its reply is read afterwards: a
status byte (1 success, 2 syntax error, 254 still processing, 255 no data)
and NUL-terminated ASCII.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import ClassVar

from ..bus import BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import DEFAULT_TIMING, Driver, DriverError, Identity, Timing

STATUS_OK = 1
STATUS_SYNTAX_ERROR = 2
STATUS_PROCESSING = 254
STATUS_NO_DATA = 255
REPLY_LENGTH = 31
LONG_REPLY_LENGTH = 40  # EC with all four outputs enabled

# The type names `i` reports, and the driver kind each maps to.
EZO_KINDS = {"PH": "ph", "DO": "do", "ORP": "orp", "EC": "ec", "RTD": "rtd", "PMP": "pmp"}
MODELS = {"ph": "EZO-pH", "do": "EZO-DO", "orp": "EZO-ORP", "ec": "EZO-EC", "rtd": "EZO-RTD",
          "pmp": "EZO-PMP"}  # fmt: skip

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")

PH = Quantity("ph", "pH", 0.01, 0.0, 14.0)
DISSOLVED_OXYGEN = Quantity("dissolved_oxygen", "mg/L", 0.05, 0.0, 100.0)
OXYGEN_SATURATION = Quantity("oxygen_saturation", "%", 0.1, 0.0, 400.0)
ORP = Quantity("orp", "mV", 1.0, -1019.9, 1019.9)
CONDUCTIVITY = Quantity("conductivity", "µS/cm", 1.0, 0.0, 500000.0)
TOTAL_DISSOLVED_SOLIDS = Quantity("total_dissolved_solids", "ppm", 1.0, 0.0, 500000.0)
SALINITY = Quantity("salinity", "PSU", 0.01, 0.0, 42.0)
SPECIFIC_GRAVITY = Quantity("specific_gravity", "", 0.001, 1.0, 1.3)
TEMPERATURE = Quantity("temperature", "°C", 0.05, -126.0, 1254.0)
TOTAL_VOLUME = Quantity("total_volume", "mL", 0.01, -1_000_000.0, 1_000_000.0)


def parse_number(text: str, what: str) -> float:
    """A decimal number as EZO circuits print them; anything else is garbage."""
    if not _NUMBER.fullmatch(text):
        raise DriverError("garbage", f"{what}: {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise DriverError("garbage", f"{what}: {text!r} is not finite")
    return value


def parse_reply(raw: bytes, address: int) -> tuple[int, str]:
    """Splits a reply into its status byte and ASCII payload."""
    if not raw:
        raise DriverError("garbage", f"0x{address:02x}: empty reply")
    status = raw[0]
    if status not in (STATUS_OK, STATUS_SYNTAX_ERROR, STATUS_PROCESSING, STATUS_NO_DATA):
        raise DriverError("garbage", f"0x{address:02x}: unknown status byte {status}")
    if status != STATUS_OK:
        return status, ""
    body, nul, _ = raw[1:].partition(b"\0")
    if not nul:
        raise DriverError("garbage", f"0x{address:02x}: reply is not NUL-terminated")
    if any(b < 0x20 or b > 0x7E for b in body):
        raise DriverError("garbage", f"0x{address:02x}: reply is not printable ASCII: {body!r}")
    return status, body.decode("ascii")


async def ezo_reply(device: I2CDevice, timing: Timing, *, length: int = REPLY_LENGTH) -> str:
    """Reads the reply to the last command, polling while the circuit is still processing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timing.timeout_s
    while True:
        status, payload = parse_reply(await device.read(length), device.address)
        if status == STATUS_OK:
            return payload
        if status == STATUS_SYNTAX_ERROR:
            raise DriverError("syntax_error", f"0x{device.address:02x} rejected the command")
        if status == STATUS_NO_DATA:
            raise DriverError("no_data", f"0x{device.address:02x} has no reply pending")
        if loop.time() >= deadline:
            raise DriverError(
                "timeout", f"0x{device.address:02x} still processing after {timing.timeout_s} s"
            )
        await asyncio.sleep(timing.poll_s)


async def ezo_query(device: I2CDevice, command: str, timing: Timing) -> str:
    """Sends a (non-reading) command and returns its reply."""
    await device.write(command.encode("ascii"))
    await asyncio.sleep(timing.command_s)
    return await ezo_reply(device, timing)


async def identify_ezo(device: I2CDevice, timing: Timing) -> Identity | None:
    """The circuit's identity from `i` (`?I,<type>,<firmware>`); None if it is not an EZO."""
    try:
        reply = await ezo_query(device, "i", timing)
    except BusNak:
        return None
    except DriverError as err:
        if err.code == "timeout":
            raise  # an EZO circuit that stays busy: try again later
        return None
    parts = reply.split(",")
    if len(parts) != 3 or parts[0].upper() != "?I":
        return None
    kind = EZO_KINDS.get(parts[1].upper())
    if kind is None:
        return None
    return Identity(kind=kind, model=MODELS[kind], firmware=parts[2] or None)


class EzoDriver(Driver):
    """Reads with `R` (or `RT,<t>`) and parses the comma-separated values."""

    min_interval_s: ClassVar[float] = 1.0
    read_command: ClassVar[str] = "R"
    reply_length: ClassVar[int] = REPLY_LENGTH

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        self._started = False

    async def start(self, temperature_c: float | None) -> None:
        command = self.read_command
        if self.compensated and temperature_c is not None:
            if not math.isfinite(temperature_c):
                raise ValueError(f"compensation temperature {temperature_c} is not finite")
            command = f"RT,{temperature_c:.2f}"
        self._started = False
        await self.device.write(command.encode("ascii"))
        self._started = True

    @property
    def ready_after_s(self) -> float:
        return self.timing.read_s

    async def collect(self) -> list[Measurement]:
        if not self._started:
            raise DriverError("no_data", f"{self.kind}: no measurement was started")
        self._started = False
        payload = await ezo_reply(self.device, self.timing, length=self.reply_length)
        return self.parse(payload)

    def parse(self, payload: str) -> list[Measurement]:
        fields = payload.split(",")
        if len(fields) != len(self.quantities):
            raise DriverError(
                "garbage",
                f"{self.kind}: expected {len(self.quantities)} value(s), got {payload!r}",
            )
        return [
            self.measurement(quantity, parse_number(text, f"{self.kind} {quantity.key}"))
            for quantity, text in zip(self.quantities, fields, strict=True)
        ]


class EzoOutputsDriver(EzoDriver):
    """A circuit whose reply holds the outputs enabled with `O,<param>,1` (EC, DO)."""

    # Output parameter names as `O,?` lists them, in reply order.
    outputs: ClassVar[tuple[tuple[str, Quantity], ...]]
    factory_outputs: ClassVar[frozenset[str]]

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        # Until setup() learns them: the factory default.
        self.quantities = tuple(q for name, q in self.outputs if name in self.factory_outputs)

    async def setup(self) -> None:
        """Learns the enabled outputs; enables the first one when none is."""
        reply = await ezo_query(self.device, "O,?", self.timing)
        fields = reply.split(",")
        if not fields or fields[0].upper() != "?O":
            raise DriverError("garbage", f"{self.kind}: unexpected reply to O,?: {reply!r}")
        enabled = {name.upper() for name in fields[1:]}
        known = {name.upper() for name, _ in self.outputs}
        if not enabled & known:
            first = self.outputs[0][0]
            await ezo_query(self.device, f"O,{first},1", self.timing)
            enabled = {first.upper()}
        self.quantities = tuple(q for name, q in self.outputs if name.upper() in enabled)


class PhDriver(EzoDriver):
    kind = "ph"
    compensated = True
    quantities = (PH,)


class DoDriver(EzoOutputsDriver):
    kind = "do"
    compensated = True
    outputs = (("mg", DISSOLVED_OXYGEN), ("%", OXYGEN_SATURATION))
    factory_outputs = frozenset({"mg"})


class OrpDriver(EzoDriver):
    kind = "orp"
    quantities = (ORP,)


class EcDriver(EzoOutputsDriver):
    kind = "ec"
    compensated = True
    reply_length = LONG_REPLY_LENGTH
    outputs = (
        ("EC", CONDUCTIVITY),
        ("TDS", TOTAL_DISSOLVED_SOLIDS),
        ("S", SALINITY),
        ("SG", SPECIFIC_GRAVITY),
    )
    factory_outputs = frozenset({"EC", "TDS", "S", "SG"})


class RtdDriver(EzoDriver):
    kind = "rtd"
    quantities = (TEMPERATURE,)


class PmpDriver(EzoDriver):
    """The dosing pump: its measurement is the total volume dispensed."""

    kind = "pmp"
    read_command = "TV,?"
    quantities = (TOTAL_VOLUME,)

    @property
    def ready_after_s(self) -> float:
        return self.timing.command_s

    def parse(self, payload: str) -> list[Measurement]:
        if not payload.upper().startswith("?TV,"):
            raise DriverError("garbage", f"pmp: unexpected reply to TV,?: {payload!r}")
        return super().parse(payload[4:])
