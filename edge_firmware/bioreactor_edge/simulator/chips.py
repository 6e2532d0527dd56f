"""Simulated chips answering the same bytes as the real ones, with fault knobs."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..bus import BusNak
from ..drivers.ads1115 import CHANNEL_MUX, OS_BIT, POWER_ON_CONFIG
from ..drivers.base import DEFAULT_TIMING, Timing
from ..drivers.ezo import (
    STATUS_NO_DATA,
    STATUS_OK,
    STATUS_PROCESSING,
    STATUS_SYNTAX_ERROR,
)
from ..drivers.sht4x import MEASURE_HIGH_PRECISION, READ_SERIAL, crc8
from .base import Faults, SimChip
from .physics import ReactorModel, ReactorState
from .tca9548a import Tca9548aMux

__all__ = ["Ads1115Chip", "EzoChip", "Faults", "Sht4xChip", "SimChip", "Tca9548aMux"]


_EZO_TYPES = {"ph": "pH", "do": "DO", "orp": "ORP", "ec": "EC", "rtd": "RTD", "pmp": "PMP"}
_OUTPUTS = {"ec": ("EC", "TDS", "S", "SG"), "do": ("mg", "%")}
_FACTORY_OUTPUTS = {"ec": {"EC", "TDS", "S", "SG"}, "do": {"mg"}}
_COMPENSATED = {"ph", "ec", "do"}


class EzoChip(SimChip):
    """An Atlas Scientific EZO circuit of `kind`; replies become readable after a delay."""

    def __init__(
        self,
        kind: str,
        address: int,
        model: ReactorModel,
        *,
        timing: Timing = DEFAULT_TIMING,
        firmware: str = "2.16",
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        if kind not in _EZO_TYPES:
            raise ValueError(f"unknown EZO kind {kind!r}")
        super().__init__(address, seed=seed)
        self.kind = kind
        self.firmware = firmware
        self.model = model
        self.timing = timing
        self._clock = clock
        self.outputs = set(_FACTORY_OUTPUTS.get(kind, ()))
        self.compensation_c = 25.0
        self.name = ""
        self.led = True
        self.total_volume_ml = 0.0
        # Replaces the value(s) a reading reports, e.g. "15.2" or "abc" (for tests).
        self.reading_override: str | None = None
        # The latest commands received, newest last (for tests).
        self.commands: deque[str] = deque(maxlen=64)
        self._pending = False  # a reply (or syntax error) waits to be read
        self._reply: bytes | None = None  # None: the command was a syntax error
        self._ready_at = 0.0
        self._lock = threading.Lock()

    def on_write(self, data: bytes) -> None:
        command = data.rstrip(b"\0\r").decode("ascii", "replace")
        with self._lock:
            self.commands.append(command)
            reply, delay = self._execute(command)
            self._pending, self._reply = True, reply
            self._ready_at = self._clock() + delay

    def on_read(self, length: int) -> bytes:
        status = self._status()
        if status != STATUS_OK:
            return bytes([status]).ljust(length, b"\0")
        with self._lock:
            reply, self._pending = self._reply or b"", False
        return (bytes([STATUS_OK]) + reply + b"\0").ljust(length, b"\0")[:length]

    def _status(self) -> int:
        with self._lock:
            if self.faults.stuck_busy:
                return STATUS_PROCESSING
            if not self._pending:
                return STATUS_NO_DATA
            if self._clock() < self._ready_at:
                return STATUS_PROCESSING
            if self._reply is None:
                self._pending = False
                return STATUS_SYNTAX_ERROR
            return STATUS_OK

    def _execute(self, command: str) -> tuple[bytes | None, float]:
        """The reply to `command` (None for a syntax error) and its processing time."""
        verb, *args = command.split(",")
        handlers = {
            "I": self._identify,
            "R": self._read,
            "RT": self._read_compensated,
            "T": self._temperature,
            "STATUS": self._status_command,
            "O": self._outputs,
            "CAL": self._calibrate,
            "L": self._led,
            "NAME": self._name,
            "TV": self._total_volume,
            "D": self._dose,
        }
        handler = handlers.get(verb.upper())
        if handler is None:
            return None, self.timing.command_s
        try:
            reply, slow = handler(args)
        except (ValueError, IndexError):
            return None, self.timing.command_s
        return reply, self.timing.read_s if slow else self.timing.command_s

    # Command handlers: (reply, whether it takes a reading's time); ValueError = syntax error.

    def _identify(self, args: list[str]) -> tuple[bytes, bool]:
        _no_args(args)
        return f"?I,{_EZO_TYPES[self.kind]},{self.firmware}".encode(), False

    def _read(self, args: list[str]) -> tuple[bytes, bool]:
        _no_args(args)
        return self._reading().encode(), True

    def _read_compensated(self, args: list[str]) -> tuple[bytes, bool]:
        self._set_compensation(args)
        return self._reading().encode(), True

    def _temperature(self, args: list[str]) -> tuple[bytes, bool]:
        if args == ["?"] and self.kind in _COMPENSATED:
            return f"?T,{self.compensation_c:.2f}".encode(), False
        self._set_compensation(args)
        return b"", False

    def _set_compensation(self, args: list[str]) -> None:
        if self.kind not in _COMPENSATED or len(args) != 1:
            raise ValueError(args)
        self.compensation_c = float(args[0])

    def _status_command(self, args: list[str]) -> tuple[bytes, bool]:
        _no_args(args)
        return b"?Status,P,5.038", False

    def _calibrate(self, args: list[str]) -> tuple[bytes, bool]:
        return (b"?Cal,1" if args == ["?"] else b""), True

    def _led(self, args: list[str]) -> tuple[bytes, bool]:
        if args == ["?"]:
            return f"?L,{int(self.led)}".encode(), False
        if args not in (["0"], ["1"]):
            raise ValueError(args)
        self.led = args == ["1"]
        return b"", False

    def _name(self, args: list[str]) -> tuple[bytes, bool]:
        if args == ["?"]:
            return f"?Name,{self.name}".encode(), False
        if len(args) != 1:
            raise ValueError(args)
        self.name = args[0]
        return b"", False

    def _total_volume(self, args: list[str]) -> tuple[bytes, bool]:
        if self.kind != "pmp" or args != ["?"]:
            raise ValueError(args)
        return f"?TV,{self.total_volume_ml:.2f}".encode(), False

    def _dose(self, args: list[str]) -> tuple[bytes, bool]:
        if self.kind != "pmp" or len(args) != 1:
            raise ValueError(args)
        ml = float(args[0])
        self.model.dose_base(ml)
        self.total_volume_ml += ml
        return b"", False

    def _outputs(self, args: list[str]) -> tuple[bytes, bool]:
        names = _OUTPUTS.get(self.kind)
        if names is None:
            raise ValueError(args)
        if args == ["?"]:
            enabled = [n for n in names if n in self.outputs]
            return ("?O," + (",".join(enabled) or "No output")).encode(), False
        if len(args) != 2 or args[0] not in names or args[1] not in ("0", "1"):
            raise ValueError(args)
        if args[1] == "1":
            self.outputs.add(args[0])
        else:
            self.outputs.discard(args[0])
        return b"", False

    def _reading(self) -> str:
        if self.reading_override is not None:
            return self.reading_override
        state = self.model.state()
        if self.kind == "ec":
            return ",".join(text for name, text in _ec_values(state) if name in self.outputs)
        if self.kind == "do":
            values = {
                "mg": f"{state.dissolved_oxygen_mg_l:.2f}",
                "%": f"{state.oxygen_saturation_pct:.1f}",
            }
            return ",".join(values[n] for n in _OUTPUTS["do"] if n in self.outputs)
        values = {
            "ph": f"{state.ph:.3f}",
            "orp": f"{state.orp_mv:.1f}",
            "rtd": f"{state.temperature_c:.3f}",
            "pmp": f"{self.total_volume_ml:.2f}",
        }
        return values[self.kind]


def _ec_values(state: ReactorState) -> list[tuple[str, str]]:
    ec = state.conductivity_us_cm
    salinity = ec / 1000 * 0.64
    return [
        ("EC", f"{ec:.0f}"),
        ("TDS", f"{ec * 0.54:.0f}"),
        ("S", f"{salinity:.2f}"),
        ("SG", f"{1.0 + salinity * 0.00075:.3f}"),
    ]


def _no_args(args: list[str]) -> None:
    if args:
        raise ValueError(args)


class Sht4xChip(SimChip):
    """A Sensirion SHT4x: measures on 0xFD, reports its serial on 0x89."""

    def __init__(
        self, address: int, model: ReactorModel, *, serial: int = 0x1234ABCD, seed: int = 0
    ) -> None:
        super().__init__(address, seed=seed)
        self.model = model
        self.serial = serial
        self._frame: bytes | None = None

    def on_write(self, data: bytes) -> None:
        if data == bytes([MEASURE_HIGH_PRECISION]):
            state = self.model.state()
            t_raw = round((state.air_temperature_c + 45.0) * 65535 / 175.0)
            rh_raw = round((state.humidity_pct + 6.0) * 65535 / 125.0)
            self._frame = _frame(t_raw, rh_raw)
        elif data == bytes([READ_SERIAL]):
            self._frame = _frame(self.serial >> 16, self.serial & 0xFFFF)
        else:
            raise BusNak(f"0x{self.address:02x}: SHT4x does not know command {data.hex()}")

    def on_read(self, length: int) -> bytes:
        # The real chip does not acknowledge a read when it has nothing to send.
        if self._frame is None:
            raise BusNak(f"0x{self.address:02x}: SHT4x has no data")
        frame, self._frame = self._frame, None
        return frame[:length].ljust(length, b"\xff")

    def garbage(self, length: int) -> bytes:
        # Random bytes, but never a frame whose CRCs happen to match.
        data = bytearray(super().garbage(length))
        if len(data) >= 3:
            data[2] = crc8(bytes(data[:2])) ^ 0x5A
        return bytes(data)


def _frame(first: int, second: int) -> bytes:
    out = bytearray()
    for word in (first, second):
        pair = max(0, min(0xFFFF, word)).to_bytes(2, "big")
        out += pair + bytes([crc8(pair)])
    return bytes(out)


class Ads1115Chip(SimChip):
    """A TI ADS1115: pointer register, config and conversion registers; converts instantly."""

    def __init__(self, address: int, model: ReactorModel, *, seed: int = 0) -> None:
        super().__init__(address, seed=seed)
        self.model = model
        self.config = POWER_ON_CONFIG
        self.conversion = 0
        self._pointer = 0

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        if data[0] > 0x03:
            raise BusNak(f"0x{self.address:02x}: ADS1115 pointer byte 0x{data[0]:02x} invalid")
        self._pointer = data[0]
        if len(data) >= 3 and self._pointer == 0x01:
            value = (data[1] << 8) | data[2]
            self.config = value | OS_BIT  # idle again once the instant conversion is done
            if value & OS_BIT:
                self._convert(value)

    def _convert(self, config: int) -> None:
        mux = config & 0x7000
        pga = (config >> 9) & 0x7
        full_scale = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)[pga]
        volts = 0.0
        if mux in CHANNEL_MUX:  # single-ended; differential inputs read 0 V here
            volts = self.model.state().analog_v[CHANNEL_MUX.index(mux)]
        raw = round(volts / full_scale * 32768)
        self.conversion = max(-32768, min(32767, raw)) & 0xFFFF

    def on_read(self, length: int) -> bytes:
        register = {0x00: self.conversion, 0x01: self.config}.get(self._pointer, 0)
        return (register.to_bytes(2, "big") * ((length + 1) // 2))[:length]

    def on_receive_byte(self) -> int:
        return self.on_read(1)[0]
