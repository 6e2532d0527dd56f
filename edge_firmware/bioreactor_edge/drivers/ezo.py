"""Atlas Scientific EZO circuits (pH, DO, ORP, EC, RTD, PMP) in I2C mode.

A command is ASCII written to the circuit; its reply is read afterwards: a
response-code byte (1 success, 2 syntax error, 254 still processing, 255 no
data) then NUL-terminated ASCII (every EZO datasheet, I2C mode, "Response
codes" page; e.g. EZO-pH V5.x p.46).
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import ClassVar

from ..bus import BusNak, I2CDevice
from ..models import Measurement, Quantity
from .base import DEFAULT_TIMING, Driver, DriverError, Identity, Timing

STATUS_OK = 1
STATUS_SYNTAX_ERROR = 2
STATUS_PROCESSING = 254
STATUS_NO_DATA = 255
# Atlas's Raspberry Pi sample code (AtlasI2C.py, read()) reads 31 bytes.
REPLY_LENGTH = 31
LONG_REPLY_LENGTH = 40  # EC with all four outputs enabled

# `i` replies `?I,<type>,<firmware>` ("Device information" page of each datasheet).
# Circuits spell their type several ways: the DO circuit says `D.O.` (older
# firmware `DO`), some pH firmware answers in lower case (`?i,pH,1.98`) and the
# ORP datasheet's own example says `OR`. Keys are upper case without dots.
EZO_KINDS = {"PH": "ph", "DO": "do", "ORP": "orp", "OR": "orp", "EC": "ec", "RTD": "rtd",
             "PMP": "pmp"}  # fmt: skip
MODELS = {"ph": "EZO-pH", "do": "EZO-DO", "orp": "EZO-ORP", "ec": "EZO-EC", "rtd": "EZO-RTD",
          "pmp": "EZO-PMP"}  # fmt: skip

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_FIRMWARE = re.compile(r"\d+(?:\.\d+)*")
# `O,?` is answered `?,O,EC,TDS,S,SG` / `?,O,%,mg` (EZO-EC and EZO-DO datasheets,
# I2C "Enable/disable parameters": DO V4.1 p.55); `?O,...` is accepted too.
_OUTPUTS_REPLY = re.compile(r"\?,?O(?:,(.*))?", re.IGNORECASE)

PH = Quantity("ph", "pH", 0.01, 0.0, 14.0)
DISSOLVED_OXYGEN = Quantity("dissolved_oxygen", "mg/L", 0.05, 0.0, 100.0)
OXYGEN_SATURATION = Quantity("oxygen_saturation", "%", 0.1, 0.0, 400.0)
ORP = Quantity("orp", "mV", 1.0, -1019.9, 1019.9)
CONDUCTIVITY = Quantity("conductivity", "µS/cm", 1.0, 0.0, 500000.0)
TOTAL_DISSOLVED_SOLIDS = Quantity("total_dissolved_solids", "ppm", 1.0, 0.0, 500000.0)
SALINITY = Quantity("salinity", "PSU", 0.01, 0.0, 42.0)
SPECIFIC_GRAVITY = Quantity("specific_gravity", "", 0.001, 1.0, 1.3)
# EZO-RTD range -126.000 to 1254 °C (datasheet cover page).
TEMPERATURE = Quantity("temperature", "°C", 0.05, -126.0, 1254.0)
TOTAL_VOLUME = Quantity("total_volume", "mL", 0.01, -1_000_000.0, 1_000_000.0)

# The EZO-RTD's reading without a probe; an error code, never a temperature.
RTD_NO_PROBE = -1023.0


def parse_number(text: str, what: str) -> float:
    """A decimal number as EZO circuits print them; anything else is garbage."""
    if not _NUMBER.fullmatch(text):
        raise DriverError("garbage", f"{what}: {text!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise DriverError("garbage", f"{what}: {text!r} is not finite")
    return value


def parse_firmware(text: str | None) -> tuple[int, ...] | None:
    """`2.10` -> (2, 10): compared part by part, so 2.10 is newer than 2.9."""
    if text is None or not _FIRMWARE.fullmatch(text):
        return None
    return tuple(int(part) for part in text.split("."))


def parse_reply(raw: bytes, address: int) -> tuple[int, str]:
    """Splits a reply into its response code and ASCII payload.

    Payload bytes have their top bit cleared, as Atlas's own Raspberry Pi code
    does (AtlasI2C.py, handle_raspi_glitch: every character except the first);
    the response code is taken as read. What is still not printable ASCII, or
    has no NUL terminator, is garbage.
    """
    if not raw:
        raise DriverError("garbage", f"0x{address:02x}: empty reply")
    status = raw[0]
    if status not in (STATUS_OK, STATUS_SYNTAX_ERROR, STATUS_PROCESSING, STATUS_NO_DATA):
        raise DriverError("garbage", f"0x{address:02x}: unknown response code {status}")
    if status != STATUS_OK:
        return status, ""
    body, nul, _ = bytes(b & 0x7F for b in raw[1:]).partition(b"\0")
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
    """Sends a command taking the short (~300 ms) processing delay and returns its reply.

    Holds the device's conversation lock: nothing else is sent to the circuit
    between the command and its reply (see I2CDevice.conversation).
    """
    async with device.conversation():
        await device.write(command.encode("ascii"))
        await asyncio.sleep(timing.command_s)
        return await ezo_reply(device, timing)


def answer(payload: str, prefix: str, what: str) -> list[str]:
    """The fields after `?<prefix>,` in a query's reply (prefix case-insensitive)."""
    fields = payload.split(",")
    if fields[0].upper() != f"?{prefix.upper()}" or len(fields) < 2:
        raise DriverError("garbage", f"{what}: unexpected reply {payload!r}")
    return fields[1:]


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
    # Stripped: some firmware pads the reply (`?I,EC,1.0 `).
    parts = [part.strip() for part in reply.split(",")]
    if len(parts) != 3 or parts[0].upper() != "?I":
        return None
    kind = EZO_KINDS.get(parts[1].upper().replace(".", ""))
    if kind is None:
        return None
    return Identity(kind=kind, model=MODELS[kind], firmware=parts[2] or None)


def decimal_text(value: float) -> str:
    """`19.5` for 19.5, as the datasheets write arguments (`T,19.5`, `D,0.5`); two decimals."""
    # + 0.0 turns a rounded -0.0 into 0.0.
    return f"{round(value, 2) + 0.0:.2f}".rstrip("0").rstrip(".")


def compensation_text(temperature_c: float) -> str:
    """The `T,`/`RT,` argument for a temperature in °C."""
    if not math.isfinite(temperature_c):
        raise ValueError(f"compensation temperature {temperature_c} is not finite")
    return decimal_text(temperature_c)


class EzoDriver(Driver):
    """Reads with `R` and parses the comma-separated values."""

    min_interval_s: ClassVar[float] = 1.0
    read_command: ClassVar[str] = "R"
    reply_length: ClassVar[int] = REPLY_LENGTH

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        self._started = False

    async def start(self, temperature_c: float | None) -> None:
        self._started = False
        await self.send_read(temperature_c)
        self._started = True

    async def send_read(self, temperature_c: float | None) -> None:
        """Writes the command that starts a reading."""
        await self.device.write(self.read_command.encode("ascii"))

    @property
    def ready_after_s(self) -> float:
        return self.timing.read_s

    async def collect(self) -> list[Measurement]:
        if not self._started:
            raise DriverError("no_data", f"{self.kind}: no measurement was started")
        self._started = False
        return self.parse(await self.read_reply())

    async def read_reply(self) -> str:
        """The payload answering the reading started by `send_read()`."""
        return await ezo_reply(self.device, self.timing, length=self.reply_length)

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


class CompensatedEzoDriver(EzoDriver):
    """Reads compensated for temperature: `RT,<t>`, or `T,<t>` then `R` where RT is unknown.

    Firmware without `RT` answers it with a syntax error (response code 2); the
    driver then falls back to `T,<t>` + `R` for the rest of its life. The
    datasheets available to us do not name the first firmware with `RT`, so
    the syntax error decides, once per driver.
    """

    compensated = True

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        self.rt_supported: bool | None = None  # None until the circuit has answered an RT
        self._pending_rt: str | None = None

    async def send_read(self, temperature_c: float | None) -> None:
        self._pending_rt = None
        if temperature_c is None:
            await self.device.write(b"R")
        elif self.rt_supported is False:
            await ezo_query(self.device, f"T,{compensation_text(temperature_c)}", self.timing)
            await self.device.write(b"R")
        else:
            self._pending_rt = compensation_text(temperature_c)
            await self.device.write(f"RT,{self._pending_rt}".encode("ascii"))

    async def read_reply(self) -> str:
        rt, self._pending_rt = self._pending_rt, None
        try:
            payload = await super().read_reply()
        except DriverError as err:
            if rt is None or err.code != "syntax_error" or self.rt_supported:
                raise
            # This firmware has no RT: set the temperature, then read.
            self.rt_supported = False
            await ezo_query(self.device, f"T,{rt}", self.timing)
            await self.device.write(b"R")
            await asyncio.sleep(self.timing.read_s)
            return await super().read_reply()
        if rt is not None:
            self.rt_supported = True
        return payload


class EzoOutputsDriver(CompensatedEzoDriver):
    """A circuit whose reply holds the outputs enabled with `O,<param>,1` (EC, DO).

    The reading lists enabled outputs in the fixed order of `outputs`, whatever
    order `O,?` lists them in (DO answers `?,O,%,mg` yet reads mg/L first).
    """

    # Output parameter names as `O,?` lists them, in reading order.
    outputs: ClassVar[tuple[tuple[str, Quantity], ...]]

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        # Until setup() learns them: the factory default.
        enabled = self.factory_outputs(parse_firmware(identity.firmware))
        self.quantities = tuple(q for name, q in self.outputs if name in enabled)

    @classmethod
    def factory_outputs(cls, firmware: tuple[int, ...] | None) -> frozenset[str]:
        """The outputs a circuit with this firmware has enabled when new."""
        return frozenset(name for name, _ in cls.outputs)

    async def setup(self) -> None:
        """Learns the enabled outputs (`O,?`); enables the first one when none is."""
        reply = await ezo_query(self.device, "O,?", self.timing)
        match = _OUTPUTS_REPLY.fullmatch(reply)
        if match is None:
            raise DriverError("garbage", f"{self.kind}: unexpected reply to O,?: {reply!r}")
        listed = {name.upper() for name in (match.group(1) or "").split(",") if name}
        known = {name.upper() for name, _ in self.outputs}
        if listed - known:
            raise DriverError("garbage", f"{self.kind}: unknown outputs in O,? reply {reply!r}")
        if not listed:
            first = self.outputs[0][0]
            await ezo_query(self.device, f"O,{first},1", self.timing)
            listed = {first.upper()}
        self.quantities = tuple(q for name, q in self.outputs if name.upper() in listed)


class PhDriver(CompensatedEzoDriver):
    kind = "ph"
    quantities = (PH,)


class DoDriver(EzoOutputsDriver):
    kind = "do"
    # Reading order mg/L then % saturation (EnviroDIY ModularSensors'
    # AtlasScientificDO, which enables both, takes mg/L as the first value).
    # Before setup() asks `O,?`, mg/L alone is assumed.
    outputs = (("mg", DISSOLVED_OXYGEN), ("%", OXYGEN_SATURATION))

    @classmethod
    def factory_outputs(cls, firmware: tuple[int, ...] | None) -> frozenset[str]:
        return frozenset({"mg"})


class OrpDriver(EzoDriver):
    kind = "orp"
    quantities = (ORP,)


# "By default, EZO Conductivity circuits with firmware version 2.10 and above
# will only output EC" (EZO-EC datasheet V6.2, cover page); older ones output all four.
EC_ONLY_FROM_FIRMWARE = (2, 10)


class EcDriver(EzoOutputsDriver):
    kind = "ec"
    reply_length = LONG_REPLY_LENGTH
    # Reading order EC,TDS,SAL,SG (EZO-EC datasheet cover page).
    outputs = (
        ("EC", CONDUCTIVITY),
        ("TDS", TOTAL_DISSOLVED_SOLIDS),
        ("S", SALINITY),
        ("SG", SPECIFIC_GRAVITY),
    )

    @classmethod
    def factory_outputs(cls, firmware: tuple[int, ...] | None) -> frozenset[str]:
        # Unknown firmware: assume the current default; setup() asks anyway.
        if firmware is None or firmware >= EC_ONLY_FROM_FIRMWARE:
            return frozenset({"EC"})
        return super().factory_outputs(firmware)


# `S,?` -> `?S,c` (Celsius, the factory default), `?S,k` or `?S,f` (EZO-RTD datasheet,
# "Temperature scale").
RTD_SCALES = ("c", "k", "f")


def to_celsius(value: float, scale: str) -> float:
    if scale == "k":
        return value - 273.15
    if scale == "f":
        return (value - 32.0) * 5.0 / 9.0
    return value


class RtdDriver(EzoDriver):
    """Temperature in °C whatever scale the circuit is set to (`S,?` -> `?S,c|k|f`)."""

    kind = "rtd"
    quantities = (TEMPERATURE,)

    def __init__(
        self, device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
    ) -> None:
        super().__init__(device, identity, timing=timing)
        self.scale = "c"  # the factory default until setup() asks

    async def setup(self) -> None:
        """Learns the temperature scale once; a scale changed later needs a rescan."""
        (scale, *rest) = answer(await ezo_query(self.device, "S,?", self.timing), "S", "rtd S,?")
        if rest or scale.lower() not in RTD_SCALES:
            raise DriverError("garbage", f"rtd: unknown temperature scale {scale!r}")
        self.scale = scale.lower()

    def parse(self, payload: str) -> list[Measurement]:
        value = parse_number(payload, "rtd temperature")
        if value == RTD_NO_PROBE:
            raise DriverError("no_probe", "rtd: no temperature probe connected (reads -1023)")
        return [self.measurement(TEMPERATURE, to_celsius(value, self.scale))]


# EZO-PMP cover page: "Flow rate 0.5ml to 105ml/min"; the calibrated maximum is `DC,?`.
PMP_MAX_ML_PER_MIN = 105.0


class PmpDriver(EzoDriver):
    """The dosing pump: its measurement is the total volume dispensed, in mL.

    `TV,?` -> `?TV,<ml>` (EZO-PMP datasheet V1.3, I2C "Total volume dispensed";
    ESPHome's ezo_pmp reads the value as the reply's second field).

    Commands (EZO-PMP datasheet V1.3, I2C chapter): `D,<ml>` "Volume dispensing"
    (a negative volume runs in reverse), `DC,<ml/min>,<minutes|*>` "Constant
    flow rate" (p.55), `X` "Stop dispensing", `D,?` -> `?D,<ml>,<1|0>`. Each
    answers after a 300 ms processing delay. Every conversation with the pump
    (the sampler's `TV,?` and discovery's `i` included) is one `ezo_query`
    under the device's conversation lock, so a dose command can never take
    another's reply or the other way round.
    """

    kind = "pmp"
    read_command = "TV,?"
    quantities = (TOTAL_VOLUME,)

    async def start(self, temperature_c: float | None) -> None:
        # The whole query runs in collect(), under the conversation lock.
        self._started = True

    @property
    def ready_after_s(self) -> float:
        return 0.0

    async def collect(self) -> list[Measurement]:
        if not self._started:
            raise DriverError("no_data", "pmp: no measurement was started")
        self._started = False
        return self.parse(await self.query(self.read_command))

    def parse(self, payload: str) -> list[Measurement]:
        fields = answer(payload, "TV", "pmp TV,?")
        return super().parse(",".join(fields))

    async def query(self, command: str) -> str:
        """One command and its reply, with nothing else sent to the pump in between."""
        return await ezo_query(self.device, command, self.timing)

    async def total_volume(self) -> float:
        """`TV,?`: mL dispensed since power-up (reverse runs count negative)."""
        (measurement,) = self.parse(await self.query("TV,?"))
        return measurement.value

    async def dispensing(self) -> tuple[float, bool]:
        """`D,?` -> `?D,<last volume requested ml>,<1 while dispensing | 0>`."""
        fields = answer(await self.query("D,?"), "D", "pmp D,?")
        if len(fields) != 2 or fields[1] not in ("0", "1"):
            raise DriverError("garbage", f"pmp: unexpected reply to D,?: {fields!r}")
        # `D,*` (dispense until stopped) reports `*` as its volume.
        volume = math.inf if fields[0] == "*" else parse_number(fields[0], "pmp dose volume")
        return volume, fields[1] == "1"

    async def dose(self, ml: float) -> None:
        """`D,<ml>`: dispenses `ml` at the pump's maximum rate."""
        if not math.isfinite(ml) or round(ml, 2) == 0:
            raise ValueError(f"dose volume must be a non-zero number of mL, got {ml!r}")
        await self.query(f"D,{decimal_text(ml)}")

    async def constant_flow(self, ml_per_min: float, minutes: float | None) -> None:
        """`DC,<ml/min>,<minutes>`; `minutes` None runs until `stop()` (`*`)."""
        if not math.isfinite(ml_per_min) or not 0 < abs(ml_per_min) <= PMP_MAX_ML_PER_MIN:
            raise ValueError(f"flow must be 0-{PMP_MAX_ML_PER_MIN} mL/min, got {ml_per_min!r}")
        if minutes is not None and (not math.isfinite(minutes) or minutes <= 0):
            raise ValueError(f"minutes must be a positive number, got {minutes!r}")
        duration = "*" if minutes is None else decimal_text(minutes)
        await self.query(f"DC,{decimal_text(ml_per_min)},{duration}")

    async def stop(self) -> None:
        """`X`: stops any dispense at once (the reply's text is not relied on)."""
        await self.query("X")


# -- Calibration ------------------------------------------------------------------
# Every calibration command in one place. From the I2C "Calibration" pages:
#   pH (EZO-pH V5.x p.52): `Cal,mid,n`, `Cal,low,n`, `Cal,high,n` (900 ms each), `Cal,?`
#     -> `?CAL,0|1|2|3` (300 ms); "Issuing the cal,mid command after the EZO pH circuit has
#     been calibrated, will clear the other calibration points". "Slope" (p.55): `Slope,?`
#     -> `?Slope,<acid %>,<base %>[,<zero offset mV>]` (the offset from firmware 2.12 on).
#   DO (EZO-DO V5.x p.52): `Cal` to atmospheric oxygen, `Cal,0` to zero dissolved oxygen
#     (1.3 s each), `Cal,?` -> `?CAL,0|1|2`.
#   EC (EZO-EC V6.2, "Calibration"): `Cal,dry` first, then `Cal,low,n` and `Cal,high,n`
#     in µS/cm (600 ms each), `Cal,?` -> `?CAL,0|1|2`.
# Replies are polled while the circuit answers 254, so the longer delays need no own timing.

# Calibration points each circuit kind accepts, in the order they must be done.
CALIBRATION_POINTS = {"ph": ("mid", "low", "high"), "do": ("atmospheric", "zero"),
                      "ec": ("dry", "low", "high")}  # fmt: skip
# Points that take the calibration solution's value (pH buffer, EC standard in µS/cm).
CALIBRATION_VALUED = frozenset({("ph", "mid"), ("ph", "low"), ("ph", "high"),
                                ("ec", "low"), ("ec", "high")})  # fmt: skip


@dataclass(frozen=True, slots=True)
class PhSlope:
    """`Slope,?`: how closely the probe matches an ideal one, per side of pH 7."""

    acid_pct: float
    base_pct: float
    offset_mv: float | None  # firmware before 2.12 does not report it


def calibration_command(kind: str, point: str, value: float | None) -> str:
    """The command committing `point` of a `kind` circuit; ValueError for a wrong pair."""
    points = CALIBRATION_POINTS.get(kind)
    if points is None or point not in points:
        raise ValueError(f"{kind}: no calibration point {point!r}")
    valued = (kind, point) in CALIBRATION_VALUED
    if valued != (value is not None):
        raise ValueError(f"{kind} {point}: " + ("needs a value" if valued else "takes no value"))
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{kind} {point}: value {value!r} is not finite")
    if kind == "do":
        return "Cal" if point == "atmospheric" else "Cal,0"
    if point == "dry":
        return "Cal,dry"
    assert value is not None
    # pH buffers as the datasheet writes them (`Cal,mid,7.00`); EC standards in µS/cm.
    text = f"{value:.2f}" if kind == "ph" else decimal_text(value)
    return f"Cal,{point},{text}"


async def calibrate(driver: EzoDriver, point: str, value: float | None) -> None:
    """Commits one calibration point; the circuit stores it in its EEPROM at once."""
    command = calibration_command(driver.kind, point, value)
    async with driver.device.conversation():
        await driver.device.write(command.encode("ascii"))
        # The pH and EC points take ~ a reading's delay; DO's 1.3 s is polled out.
        await asyncio.sleep(driver.timing.read_s)
        await ezo_reply(driver.device, driver.timing)


async def calibration_points(driver: EzoDriver) -> int:
    """`Cal,?`: how many points the circuit holds (0 = not calibrated)."""
    fields = answer(await ezo_query(driver.device, "Cal,?", driver.timing), "CAL", "Cal,?")
    if len(fields) != 1 or not fields[0].isdigit():
        raise DriverError("garbage", f"{driver.kind}: unexpected reply to Cal,?: {fields!r}")
    return int(fields[0])


async def ph_slope(driver: EzoDriver) -> PhSlope:
    """`Slope,?` of a pH circuit."""
    fields = answer(await ezo_query(driver.device, "Slope,?", driver.timing), "Slope", "Slope,?")
    if len(fields) not in (2, 3):
        raise DriverError("garbage", f"ph: unexpected reply to Slope,?: {fields!r}")
    values = [parse_number(text, "ph slope") for text in fields]
    return PhSlope(values[0], values[1], values[2] if len(values) == 3 else None)
