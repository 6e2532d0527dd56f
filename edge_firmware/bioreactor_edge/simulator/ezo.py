"""Atlas Scientific EZO circuits (pH, DO, ORP, EC, RTD, PMP) in I2C mode.

Written from Atlas Scientific's datasheets, I2C chapters. Citations name the
datasheet and its page title; where a page number is given it is the one of
the revision named:
  pH  "EZO-pH" V5.x / V6.x (I2C: Response codes p.46, Taking reading p.51)
  DO  "Dissolved Oxygen EZO Circuit" V4.1 (I2C: Response codes p.44,
      Enable/disable parameters p.55), "EZO-DO" V5.4
  EC  "EZO-EC" V6.2 (cover note on firmware 2.10, Enable/disable parameters)
  ORP "EZO-ORP" (I2C Sending commands p.41: commands are not case sensitive)
  RTD "EZO-RTD", PMP "EZO-PMP" V1.3 (I2C Constant flow rate p.55)
and, for the Raspberry Pi byte glitch, Atlas's Raspberry Pi sample code.

Protocol (every datasheet, I2C "Response codes"): the host writes an ASCII
command, waits the command's processing delay, then reads; the first byte is
1 (success), 2 (syntax error), 254 (still processing, not ready) or 255 (no
data to send), followed by the ASCII reply and a NUL.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..bus import BusNak
from .base import SimChip
from .physics import ReactorModel, ReactorState

SUCCESS = 1
SYNTAX_ERROR = 2
STILL_PROCESSING = 254
NO_DATA = 255

# Datasheet I2C pages state each command's processing delay; "300ms" on every
# page not listed here (Response codes page: `delay(300)`).
COMMAND_S = 0.3
# "Taking reading" page: R (and RT) processing delay per circuit.
READ_S = {"ph": 0.9, "orp": 0.9, "do": 0.6, "ec": 0.6, "rtd": 0.6, "pmp": 0.3}
# "Calibration" page: the delay of a calibration point (Cal,? and Cal,clear: 300 ms).
CALIBRATE_S = {"ph": 0.9, "orp": 0.9, "do": 1.3, "ec": 0.6, "rtd": 0.6, "pmp": 0.3}

# "Device information" page: `i` -> `?I,<type>,<firmware>`; the DO circuit's
# example is `?I,D.O.,1.0` (field units with firmware 1.7 answer `DO`).
TYPE_NAMES = {"ph": "pH", "do": "D.O.", "orp": "ORP", "ec": "EC", "rtd": "RTD", "pmp": "PMP"}
DEFAULT_FIRMWARE = "2.16"
# "Reading device status" page: `?Status,<restart reason>,<VCC>`; P = powered off.
VCC = "5.038"

# "Enable/disable parameters" pages: names as `O,?` lists them, in that order.
# DO p.55: "?,O,%,mg  if both are enabled". EC: "?,O,EC,TDS,S,SG".
OUTPUT_NAMES = {"do": ("%", "mg"), "ec": ("EC", "TDS", "S", "SG")}
# Order of the values in a reading (R): EC, TDS, S, SG (EC datasheet output
# list). DO: the stored pages do not show a two-value reading; mg/L first, as
# EnviroDIY's AtlasScientificDO (which enables both) reads it.
READING_ORDER = {"do": ("mg", "%"), "ec": ("EC", "TDS", "S", "SG")}
# EC V6.2 cover: "By default, EZO Conductivity circuits with firmware version
# 2.10 and above will only output EC". Older firmware: all four.
EC_ONLY_FROM_FIRMWARE = (2, 10)
COMPENSATED = frozenset({"ph", "ec", "do"})
# Temperature compensation defaults: 25 °C; the D.O. circuit 20 °C ("The D.O.
# circuit has its temperature compensation set to 20˚C by default").
DEFAULT_COMPENSATION_C = {"ph": 25.0, "ec": 25.0, "do": 20.0}
RTD_NO_PROBE = "-1023.000"  # EZO-RTD reading with no probe connected
PMP_MAX_ML_MIN = 105.0  # EZO-PMP cover: flow rate 0.5 ml to 105 ml/min


# A command's reply text and processing delay; None: no response code at all.
_Outcome = tuple[str | None, float] | None


class _SyntaxError(Exception):
    """The command is not valid for this circuit: response code 2."""


@dataclass(slots=True)
class _Dose:
    """One running dispense of the pump."""

    requested: float | None  # ml, None for `D,*` (until stopped)
    rate_ml_s: float  # signed: negative runs in reverse
    started: float
    dispensed: float = 0.0
    done: bool = False


def _firmware_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return ()


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _SyntaxError(text)
    return value


def _short(value: float) -> str:
    """Numbers as the datasheet examples print settings: `19.5`, `25.0`, `36.46`."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


class EzoChip(SimChip):
    """One EZO circuit of `kind` measuring `model`; delays divided by `speed`."""

    # The circuits stretch SCL while preparing a reply (hence the Raspberry Pi
    # glitch Atlas's sample code works around).
    clock_stretching = True

    def __init__(
        self,
        kind: str,
        address: int,
        model: ReactorModel,
        *,
        firmware: str = DEFAULT_FIRMWARE,
        type_name: str | None = None,
        rt_supported: bool = True,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        if kind not in TYPE_NAMES:
            raise ValueError(f"unknown EZO kind {kind!r}")
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        super().__init__(address, seed=seed)
        self.kind = kind
        self.model = model
        self.firmware = firmware
        self.type_name = type_name or TYPE_NAMES[kind]
        # Firmware without RT answers it with a syntax error.
        self.rt_supported = rt_supported
        self.speed = speed
        self._clock = clock
        self.probe_connected = True  # RTD: False reads -1023.000
        self.reading_override: str | None = None  # replaces a reading's text (tests)
        self.commands: deque[str] = deque(maxlen=64)  # latest commands, newest last
        # (command verb, reply text) of every successful reply produced, newest last.
        self.answers: deque[tuple[str, str]] = deque(maxlen=4096)
        self._lock = threading.RLock()
        self._pending = False
        self._reply: str | None = None  # None: syntax error
        self._ready_at = 0.0
        self._reset_settings()
        self.restart_reason = "P"
        self.asleep = False
        self.uart_mode = False

    def _reset_settings(self) -> None:
        """Factory settings ("Factory reset" page: calibration, LED, name, outputs)."""
        self.led = True
        self.name = ""
        self.protocol_lock = False
        self.compensation_c = DEFAULT_COMPENSATION_C.get(self.kind, 25.0)
        self.calibration: list[str] = []  # points calibrated, in order
        self.extended_scale = False
        self.outputs = set(self._factory_outputs())
        self.scale = "c"  # RTD
        self.logger_interval = 0  # RTD data logger, 0 = off
        self.probe_k = 1.0  # EC
        self.tds_factor = 0.54  # EC
        self.salinity = 0.0  # DO
        self.pressure_kpa = 101.3  # DO
        self.total_volume_ml = 0.0  # PMP TV (signed)
        self.absolute_volume_ml = 0.0  # PMP ATV
        self.max_rate_ml_min = PMP_MAX_ML_MIN
        self._dose: _Dose | None = None

    def _factory_outputs(self) -> tuple[str, ...]:
        if self.kind == "ec":
            newer = _firmware_tuple(self.firmware) >= EC_ONLY_FROM_FIRMWARE
            return ("EC",) if newer else READING_ORDER["ec"]
        if self.kind == "do":
            return ("mg",)
        return ()

    def power_cycle(self) -> None:
        # Settings live in the circuit's EEPROM; the pending reply, the
        # compensation temperature (DO datasheet: "Temperature is not stored")
        # and a running dose do not.
        with self._lock:
            self._settle_pump()
            self._pending, self._reply = False, None
            self.compensation_c = DEFAULT_COMPENSATION_C.get(self.kind, 25.0)
            self._dose = None
            self.asleep = False
            self.restart_reason = "P"

    # Bus side ------------------------------------------------------------------

    def _acknowledge(self) -> None:
        if self.uart_mode:
            raise BusNak(f"0x{self.address:02x}: circuit is in UART mode")

    def on_quick(self) -> None:
        self._acknowledge()

    def on_write(self, data: bytes) -> None:
        self._acknowledge()
        command = data.rstrip(b"\0\r").decode("ascii", "replace")
        with self._lock:
            self._settle_pump()
            self.commands.append(command)
            # "Sleep mode": any command wakes the circuit.
            self.asleep = False
            self._pending, self._reply, self._ready_at = False, None, 0.0
            try:
                outcome = self._execute(command)
            except (_SyntaxError, ValueError, IndexError):
                outcome = (None, COMMAND_S)
            if outcome is None:
                return  # the circuit sends no response code after this command
            reply, delay = outcome
            if reply is not None:
                self.answers.append((command.split(",")[0].upper(), reply))
            self._pending, self._reply = True, reply
            self._ready_at = self._clock() + delay / self.speed

    def on_read(self, length: int) -> bytes:
        self._acknowledge()
        with self._lock:
            self._settle_pump()
            code = self._code()
            body = b""
            if code in (SUCCESS, SYNTAX_ERROR):
                # The reply is sent once, then there is no data to send (the
                # datasheets do not say; the stricter reading of "255 no data").
                body = (self._reply or "").encode("ascii") if code == SUCCESS else b""
                self._pending, self._reply = False, None
        return (bytes([code]) + body + b"\0").ljust(length, b"\0")[:length]

    def _code(self) -> int:
        if self.faults.stuck_busy:
            return STILL_PROCESSING
        if not self._pending:
            return NO_DATA
        if self._clock() < self._ready_at:
            return STILL_PROCESSING
        return SYNTAX_ERROR if self._reply is None else SUCCESS

    # Commands -------------------------------------------------------------------

    def _execute(self, command: str) -> _Outcome:
        verb, *args = command.split(",")
        handler = _HANDLERS.get(verb.upper())
        if handler is None:
            raise _SyntaxError(command)
        return handler(self, [a.strip() for a in args])

    def _identify(self, args: list[str]) -> tuple[str, float]:
        _no_args(args)
        return f"?I,{self.type_name},{self.firmware}", COMMAND_S

    def _status(self, args: list[str]) -> tuple[str, float]:
        _no_args(args)
        return f"?Status,{self.restart_reason},{VCC}", COMMAND_S

    def _read(self, args: list[str]) -> tuple[str, float]:
        _no_args(args)
        return self._reading(), READ_S[self.kind]

    def _read_compensated(self, args: list[str]) -> tuple[str, float]:
        # pH/EC/DO "Temperature compensation" page: RT,n sets T and takes a reading.
        if self.kind not in COMPENSATED or not self.rt_supported or len(args) != 1:
            raise _SyntaxError(args)
        self.compensation_c = _number(args[0])
        return self._reading(), READ_S[self.kind]

    def _temperature(self, args: list[str]) -> tuple[str, float]:
        if self.kind not in COMPENSATED or len(args) != 1:
            raise _SyntaxError(args)
        if args[0] == "?":
            return f"?T,{_short(self.compensation_c)}", COMMAND_S
        self.compensation_c = _number(args[0])
        return "", COMMAND_S

    def _led(self, args: list[str]) -> tuple[str, float]:
        return self._flag("L", "led", args)

    def _protocol_lock(self, args: list[str]) -> tuple[str, float]:
        return self._flag("Plock", "protocol_lock", args)

    def _extended(self, args: list[str]) -> tuple[str, float]:
        if self.kind == "ph":
            return self._flag("pHext", "extended_scale", args)
        if self.kind == "orp":
            return self._flag("ORPext", "extended_scale", args)
        raise _SyntaxError(args)

    def _flag(self, label: str, attribute: str, args: list[str]) -> tuple[str, float]:
        if args == ["?"]:
            return f"?{label},{int(getattr(self, attribute))}", COMMAND_S
        if args not in (["0"], ["1"]):
            raise _SyntaxError(args)
        setattr(self, attribute, args == ["1"])
        return "", COMMAND_S

    def _find(self, args: list[str]) -> tuple[str, float]:
        _no_args(args)  # "Find": the LED blinks white; nothing else changes
        return "", COMMAND_S

    def _name(self, args: list[str]) -> tuple[str, float]:
        if args == ["?"]:
            return f"?Name,{self.name}", COMMAND_S
        if len(args) > 1 or (args and len(args[0]) > 16):
            raise _SyntaxError(args)  # "Naming device": up to 16 characters
        self.name = args[0] if args else ""
        return "", COMMAND_S

    def _sleep(self, args: list[str]) -> None:
        _no_args(args)
        self.asleep = True  # "Sleep mode/low power": no response code

    def _factory(self, args: list[str]) -> None:
        _no_args(args)
        self._reset_settings()  # "Factory reset": the circuit reboots, no reply
        self.restart_reason = "S"

    def _i2c_address(self, args: list[str]) -> None:
        # "I2C address change": I2C,n (1-127), the circuit reboots at the new address.
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= 127:
            raise _SyntaxError(args)
        self.address = int(args[0])
        self.restart_reason = "S"

    def _baud(self, args: list[str]) -> None:
        # "Change to UART mode"; refused while "Protocol lock" holds it in I2C.
        if len(args) != 1 or self.protocol_lock:
            raise _SyntaxError(args)
        self.uart_mode = True

    def _calibrate(self, args: list[str]) -> tuple[str, float]:
        if args == ["?"]:
            # "Calibration" pages: `?CAL,n`, n the points held (pH 0-3, DO and EC 0-2);
            # EC's dry calibration is a prerequisite, not a point ("1 or 2 point").
            held = [p for p in self.calibration if p != "dry"]
            return f"?CAL,{len(held)}", COMMAND_S
        if [a.lower() for a in args] == ["clear"]:
            self.calibration = []
            return "", COMMAND_S
        point = _CALIBRATIONS[self.kind](args)
        if self.kind == "ph" and point == "mid":
            # pH "Calibration": Cal,mid clears the other calibration points.
            self.calibration = []
        if point not in self.calibration:
            self.calibration.append(point)
        return "", CALIBRATE_S[self.kind]

    def _slope(self, args: list[str]) -> tuple[str, float]:
        # pH "Slope": `?Slope,<acid %>,<base %>,<zero offset mV>`, e.g. ?Slope,99.7,100.3,-0.89.
        if self.kind != "ph" or args != ["?"]:
            raise _SyntaxError(args)
        acid = "99.7" if "low" in self.calibration else "100.0"
        base = "100.3" if "high" in self.calibration else "100.0"
        offset = "-0.89" if "mid" in self.calibration else "0.00"
        return f"?Slope,{acid},{base},{offset}", COMMAND_S

    def _outputs(self, args: list[str]) -> tuple[str, float]:
        names = OUTPUT_NAMES.get(self.kind)
        if names is None:
            raise _SyntaxError(args)
        if args == ["?"]:
            # Note the comma after `?` (DO p.55, EC "Enable/disable parameters").
            return ",".join(["?", "O", *(n for n in names if n in self.outputs)]), COMMAND_S
        by_upper = {n.upper(): n for n in names}
        if len(args) != 2 or args[0].upper() not in by_upper or args[1] not in ("0", "1"):
            raise _SyntaxError(args)
        name = by_upper[args[0].upper()]
        if args[1] == "1":
            self.outputs.add(name)
        else:
            self.outputs.discard(name)
        return "", COMMAND_S

    def _scale_or_salinity(self, args: list[str]) -> tuple[str, float]:
        if self.kind == "rtd":
            # RTD "Temperature scale": S,c|k|f; S,? -> ?S,c
            if args == ["?"]:
                return f"?S,{self.scale}", COMMAND_S
            if len(args) != 1 or args[0].lower() not in ("c", "k", "f"):
                raise _SyntaxError(args)
            self.scale = args[0].lower()
            return "", COMMAND_S
        if self.kind == "do":
            # DO "Salinity compensation": S,n (µS) or S,n,ppt; S,? -> ?S,<n>,<unit>
            if args == ["?"]:
                return f"?S,{_short(self.salinity)},uS", COMMAND_S
            if len(args) not in (1, 2) or (len(args) == 2 and args[1].lower() != "ppt"):
                raise _SyntaxError(args)
            self.salinity = _number(args[0])
            return "", COMMAND_S
        raise _SyntaxError(args)

    def _pressure(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "do" or len(args) != 1:
            raise _SyntaxError(args)
        if args[0] == "?":
            return f"?P,{_short(self.pressure_kpa)}", COMMAND_S
        self.pressure_kpa = _number(args[0])
        return "", COMMAND_S

    def _probe_k(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "ec" or len(args) != 1:
            raise _SyntaxError(args)
        if args[0] == "?":
            return f"?K,{_short(self.probe_k)}", COMMAND_S
        value = _number(args[0])
        if not 0.1 <= value <= 10.0:  # EC cover: K 0.1 - K 10
            raise _SyntaxError(args)
        self.probe_k = value
        return "", COMMAND_S

    def _tds(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "ec" or len(args) != 1:
            raise _SyntaxError(args)
        if args[0] == "?":
            return f"?TDS,{_short(self.tds_factor)}", COMMAND_S
        self.tds_factor = _number(args[0])
        return "", COMMAND_S

    def _dispense_or_log(self, args: list[str]) -> tuple[str, float]:
        if self.kind == "rtd":
            # RTD "Data logger": D,n (n x 10 s, 0 = off); D,? -> ?D,n
            if args == ["?"]:
                return f"?D,{self.logger_interval}", COMMAND_S
            if len(args) != 1 or not args[0].isdigit():
                raise _SyntaxError(args)
            self.logger_interval = int(args[0])
            return "", COMMAND_S
        if self.kind != "pmp" or len(args) not in (1, 2):
            raise _SyntaxError(args)
        if args == ["?"]:
            return self._dose_status(), COMMAND_S
        if args[0].lstrip("-") == "*":
            self._start_dose(None, -1.0 if args[0].startswith("-") else 1.0, PMP_MAX_ML_MIN)
            return "", COMMAND_S
        ml = _number(args[0])
        minutes = _number(args[1]) if len(args) == 2 else None
        rate = abs(ml) / minutes if minutes else self.max_rate_ml_min
        if ml == 0 or rate > self.max_rate_ml_min:
            raise _SyntaxError(args)
        self._start_dose(abs(ml), math.copysign(1.0, ml), rate)
        return "", COMMAND_S

    def _dose_status(self) -> str:
        """PMP "Volume dispensing": D,? -> ?D,<ml requested>,<1 dispensing | 0 idle>
        (`*` for a dose until stopped; the field layout as ESPHome's ezo_pmp reads it)."""
        dose = self._dose
        if dose is None:
            return "?D,0.00,0"
        volume = "*" if dose.requested is None else f"{dose.requested:.2f}"
        return f"?D,{volume},{int(not dose.done)}"

    def _constant_flow(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "pmp":
            raise _SyntaxError(args)
        if args == ["?"]:
            # PMP p.55: "DC,? reports maximum possible flow rate  ?maxrate,58.5"
            return f"?maxrate,{_short(self.max_rate_ml_min)}", COMMAND_S
        if len(args) != 2:
            raise _SyntaxError(args)
        rate = _number(args[0])
        if rate == 0 or abs(rate) > self.max_rate_ml_min:
            raise _SyntaxError(args)  # "*TOOFAST" in UART mode
        requested = None if args[1] == "*" else abs(rate) * _number(args[1])
        self._start_dose(requested, math.copysign(1.0, rate), abs(rate))
        return "", COMMAND_S

    def _stop(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "pmp":
            raise _SyntaxError(args)
        _no_args(args)
        if self._dose is not None:
            self._dose.done = True
        return "", COMMAND_S

    def _total_volume(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "pmp" or args != ["?"]:
            raise _SyntaxError(args)
        return f"?TV,{self.total_volume_ml:.2f}", COMMAND_S

    def _absolute_volume(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "pmp" or args != ["?"]:
            raise _SyntaxError(args)
        return f"?ATV,{self.absolute_volume_ml:.2f}", COMMAND_S

    def _clear(self, args: list[str]) -> tuple[str, float]:
        if self.kind != "pmp":
            raise _SyntaxError(args)
        _no_args(args)
        self.total_volume_ml = 0.0  # "Total volume dispensed": Clear resets TV
        return "", COMMAND_S

    # The pump and the reactor ----------------------------------------------------

    def _start_dose(self, requested: float | None, direction: float, rate_ml_min: float) -> None:
        self._dose = _Dose(requested, direction * rate_ml_min / 60.0, self._clock())

    def _settle_pump(self) -> None:
        """Moves what the pump dispensed since the last look into the totals and the reactor."""
        dose = self._dose
        if dose is None or dose.done:
            return
        elapsed = (self._clock() - dose.started) * self.speed
        target = abs(dose.rate_ml_s) * elapsed
        if dose.requested is not None and target >= dose.requested:
            target, dose.done = dose.requested, True
        delta = target - dose.dispensed
        dose.dispensed = target
        signed = math.copysign(delta, dose.rate_ml_s)
        self.total_volume_ml += signed
        self.absolute_volume_ml += delta
        if signed > 0:
            self.model.dose_base(signed)

    def _reading(self) -> str:
        return self.reading_override if self.reading_override is not None else self._measure()

    def _measure(self) -> str:
        if self.kind == "pmp":
            # PMP "Single report": R -> the volume of the current or last dispense.
            return f"{self._dose.dispensed if self._dose else 0.0:.2f}"
        state = self.model.state()
        if self.kind == "rtd":
            if not self.probe_connected:
                return RTD_NO_PROBE
            celsius = state.temperature_c
            value = {"c": celsius, "k": celsius + 273.15, "f": celsius * 9 / 5 + 32}[self.scale]
            return f"{value:.3f}"
        if self.kind in READING_ORDER:
            values = _output_values(self.kind, state, self.tds_factor)
            enabled = [values[n] for n in READING_ORDER[self.kind] if n in self.outputs]
            # DO "Enable/disable parameters": with all disabled readings say "no output".
            return ",".join(enabled) or "no output"
        if self.kind == "ph":
            return f"{state.ph:.3f}"
        return f"{state.orp_mv:.1f}"


def _output_values(kind: str, state: ReactorState, tds_factor: float) -> dict[str, str]:
    if kind == "do":
        return {
            "mg": f"{state.dissolved_oxygen_mg_l:.2f}",
            "%": f"{state.oxygen_saturation_pct:.1f}",
        }
    ec = state.conductivity_us_cm
    salinity = ec / 1000 * 0.64
    return {
        "EC": f"{ec:.0f}",
        "TDS": f"{ec * tds_factor:.0f}",
        "S": f"{salinity:.2f}",
        "SG": f"{1.0 + salinity * 0.00075:.3f}",
    }


def _no_args(args: list[str]) -> None:
    if args:
        raise _SyntaxError(args)


def _ph_point(args: list[str]) -> str:
    # pH "Calibration": Cal,mid,n / Cal,low,n / Cal,high,n
    if len(args) != 2 or args[0].lower() not in ("mid", "low", "high"):
        raise _SyntaxError(args)
    _number(args[1])
    return args[0].lower()


def _single_value_point(args: list[str]) -> str:
    # ORP "Cal,n" (mV), RTD "Cal,t" (temperature), PMP "Cal,v" (measured volume).
    if len(args) != 1:
        raise _SyntaxError(args)
    _number(args[0])
    return "point"


def _do_point(args: list[str]) -> str:
    # DO "Calibration": Cal (atmospheric oxygen), Cal,0 (zero dissolved oxygen).
    if args == []:
        return "atmospheric"
    if args == ["0"]:
        return "zero"
    raise _SyntaxError(args)


def _ec_point(args: list[str]) -> str:
    # EC "Calibration": Cal,dry, then Cal,n (single point) or Cal,low,n + Cal,high,n.
    if args and args[0].lower() == "dry" and len(args) == 1:
        return "dry"
    if len(args) == 2 and args[0].lower() in ("low", "high"):
        _number(args[1])
        return args[0].lower()
    if len(args) == 1:
        _number(args[0])
        return "single"
    raise _SyntaxError(args)


_CALIBRATIONS: dict[str, Callable[[list[str]], str]] = {
    "ph": _ph_point,
    "orp": _single_value_point,
    "rtd": _single_value_point,
    "pmp": _single_value_point,
    "do": _do_point,
    "ec": _ec_point,
}

# Command verbs (not case sensitive) and their handlers.
_HANDLERS: dict[str, Callable[[EzoChip, list[str]], _Outcome]] = {
    "I": EzoChip._identify,
    "STATUS": EzoChip._status,
    "R": EzoChip._read,
    "RT": EzoChip._read_compensated,
    "T": EzoChip._temperature,
    "L": EzoChip._led,
    "FIND": EzoChip._find,
    "NAME": EzoChip._name,
    "PLOCK": EzoChip._protocol_lock,
    "SLEEP": EzoChip._sleep,
    "FACTORY": EzoChip._factory,
    "I2C": EzoChip._i2c_address,
    "BAUD": EzoChip._baud,
    "CAL": EzoChip._calibrate,
    "SLOPE": EzoChip._slope,
    "PHEXT": EzoChip._extended,
    "ORPEXT": EzoChip._extended,
    "O": EzoChip._outputs,
    "S": EzoChip._scale_or_salinity,
    "P": EzoChip._pressure,
    "K": EzoChip._probe_k,
    "TDS": EzoChip._tds,
    "D": EzoChip._dispense_or_log,
    "DC": EzoChip._constant_flow,
    "X": EzoChip._stop,
    "TV": EzoChip._total_volume,
    "ATV": EzoChip._absolute_volume,
    "CLEAR": EzoChip._clear,
}
