"""The agent's configuration file (TOML), validated with voluptuous.

Every key is optional; defaults shown::

    name = "Bench A"                      # shown in Home Assistant; default: host name
    data_dir = "/var/lib/bioreactor-edge" # journal, token, certificate

    [api]
    host = "0.0.0.0"
    port = 8420
    tls = true                            # HTTPS with a self-signed certificate (docs/board.md)

    [journal]
    retention_days = 30                   # keep acknowledged readings this long
    budget_mb = 1024                      # disk budget of the journal

    [discovery]
    scan = true                           # false: only the pinned sensors below
    interval_s = 60                       # periodic rescan

    [sampling]
    interval_s = 5.0                      # per sensor; EZO circuits never faster than 1 Hz

    [calibration]                         # a point is committed once the reading is stable:
    stable_readings = 5                   # this many readings in a row within tolerance ...
    stable_seconds = 20                   # ... spanning at least this long (docs/calibration.md)

    [[reactors]]                          # default: one reactor "bus1" on /dev/i2c-1
    id = "r1"                             # stable: part of Home Assistant's identifiers
    name = "Reactor 1"
    bus = 1
    mux_address = 0x70                    # optional TCA9548A multiplexer ...
    mux_channel = 0                       # ... and its channel (0-7)

    [[reactors.sensors]]                  # pinned sensors: used even when scanning is off
    address = 0x63
    kind = "ph"                           # ph, do, orp, ec, rtd, pmp, sht4x, ads1115
    interval_s = 5                        # optional

    [[reactors.actuators]]                # outputs with their safe state and hard limits,
    [[reactors.loops]]                    # control loops: see control/config.py, docs/safety.md

An invalid file raises ConfigError naming the key path and the problem, e.g.
``reactors[0].sensors[1].address: must be an integer between 0x08 and 0x77``.
"""

from __future__ import annotations

import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol

from .config_validators import in_range
from .control.config import (
    ACTUATOR,
    LOOP,
    ActuatorConfig,
    LoopConfig,
    actuator_config,
    check_reactor,
    loop_config,
)

DEFAULT_DATA_DIR = Path("/var/lib/bioreactor-edge")
DEFAULT_PORT = 8420
DEFAULT_HOST = "0.0.0.0"  # noqa: S104 (the agent serves the lab network)
SENSOR_KINDS = ("ph", "do", "orp", "ec", "rtd", "pmp", "sht4x", "ads1115")
REACTOR_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # The token must not cross the lab network in clear: plain HTTP only when configured.
    tls: bool = True


@dataclass(frozen=True, slots=True)
class JournalConfig:
    retention_days: float = 30.0
    budget_mb: int = 1024


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    scan: bool = True
    interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    stable_readings: int = 5
    stable_seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class PinnedSensor:
    address: int
    kind: str
    interval_s: float | None = None


@dataclass(frozen=True, slots=True)
class ReactorConfig:
    id: str
    name: str
    bus: int
    # The room Home Assistant suggests for the reactor's device; None suggests none.
    area: str | None = None
    mux_address: int | None = None
    mux_channel: int | None = None
    sensors: tuple[PinnedSensor, ...] = ()
    actuators: tuple[ActuatorConfig, ...] = ()
    loops: tuple[LoopConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    name: str
    data_dir: Path
    api: ApiConfig
    journal: JournalConfig
    discovery: DiscoveryConfig
    sampling: SamplingConfig
    reactors: tuple[ReactorConfig, ...]
    calibration: CalibrationConfig = CalibrationConfig()


_SENSOR = vol.Schema(
    {
        vol.Required("address"): in_range(0x08, 0x77, integer=True, hexadecimal=True),
        vol.Required("kind"): vol.In(SENSOR_KINDS, msg=f"must be one of {', '.join(SENSOR_KINDS)}"),
        vol.Optional("interval_s"): in_range(0.05, 86400),
    }
)
_REACTOR = vol.Schema(
    {
        vol.Required("id"): vol.All(
            str, vol.Match(REACTOR_ID_PATTERN, msg="must be lowercase letters, digits, - or _")
        ),
        vol.Optional("name"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("area"): vol.All(str, vol.Strip, vol.Length(min=1, max=64)),
        vol.Optional("bus", default=1): in_range(0, 255, integer=True),
        vol.Optional("mux_address"): in_range(0x70, 0x77, integer=True, hexadecimal=True),
        vol.Optional("mux_channel"): in_range(0, 7, integer=True),
        vol.Optional("sensors", default=list): [_SENSOR],
        vol.Optional("actuators", default=list): [ACTUATOR],
        vol.Optional("loops", default=list): [LOOP],
    }
)
_SCHEMA = vol.Schema(
    {
        vol.Optional("name"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("data_dir"): vol.All(str, vol.Length(min=1)),
        vol.Optional("api", default=dict): {
            vol.Optional("host", default=DEFAULT_HOST): vol.All(str, vol.Length(min=1)),
            vol.Optional("port", default=DEFAULT_PORT): in_range(1, 65535, integer=True),
            vol.Optional("tls", default=True): bool,
        },
        vol.Optional("journal", default=dict): {
            vol.Optional("retention_days", default=30): in_range(0, 3650),
            vol.Optional("budget_mb", default=1024): in_range(1, 1 << 20, integer=True),
        },
        vol.Optional("discovery", default=dict): {
            vol.Optional("scan", default=True): bool,
            vol.Optional("interval_s", default=60): in_range(1, 86400),
        },
        vol.Optional("sampling", default=dict): {
            vol.Optional("interval_s", default=5.0): in_range(0.05, 86400),
        },
        vol.Optional("reactors", default=list): [_REACTOR],
        vol.Optional("calibration", default=dict): {
            vol.Optional("stable_readings", default=5): in_range(2, 120, integer=True),
            vol.Optional("stable_seconds", default=20.0): in_range(0, 3600),
        },
    }
)


def _path(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def _check_consistency(raw: dict[str, Any]) -> None:
    """Rules across keys, raised as vol.Invalid with the offending path."""
    ids: set[str] = set()
    places: set[tuple[int, int | None, int | None]] = set()
    for index, reactor in enumerate(raw["reactors"]):
        if reactor["id"] in ids:
            raise vol.Invalid(f"duplicate reactor id {reactor['id']!r}", ["reactors", index, "id"])
        ids.add(reactor["id"])
        has_address, has_channel = "mux_address" in reactor, "mux_channel" in reactor
        if has_address != has_channel:
            raise vol.Invalid(
                "mux_address and mux_channel must be given together", ["reactors", index]
            )
        place = (reactor["bus"], reactor.get("mux_address"), reactor.get("mux_channel"))
        if place in places:
            raise vol.Invalid("another reactor uses the same bus and channel", ["reactors", index])
        places.add(place)
        addresses: set[int] = set()
        for position, sensor in enumerate(reactor["sensors"]):
            where = ["reactors", index, "sensors", position, "address"]
            if sensor["address"] in addresses:
                raise vol.Invalid(f"duplicate address 0x{sensor['address']:02x}", where)
            if sensor["address"] == reactor.get("mux_address"):
                raise vol.Invalid("is the multiplexer's own address", where)
            addresses.add(sensor["address"])
        check_reactor(reactor["actuators"], reactor["loops"], ["reactors", index])


def parse_config(raw: dict[str, Any], *, default_data_dir: Path = DEFAULT_DATA_DIR) -> AgentConfig:
    """Validates a parsed TOML document; raises ConfigError naming the key and problem."""
    try:
        data = _SCHEMA(raw)
        _check_consistency(data)
    except vol.MultipleInvalid as err:
        first = err.errors[0]
        raise ConfigError(f"{_path(list(first.path))}: {first.error_message}") from None
    except vol.Invalid as err:
        raise ConfigError(f"{_path(list(err.path))}: {err.error_message}") from None
    reactors = tuple(
        ReactorConfig(
            id=r["id"],
            name=r.get("name", f"Reactor {r['id']}"),
            bus=r["bus"],
            area=r.get("area"),
            mux_address=r.get("mux_address"),
            mux_channel=r.get("mux_channel"),
            sensors=tuple(
                PinnedSensor(s["address"], s["kind"], s.get("interval_s")) for s in r["sensors"]
            ),
            actuators=tuple(actuator_config(a) for a in r["actuators"]),
            loops=tuple(loop_config(loop) for loop in r["loops"]),
        )
        for r in data["reactors"]
    ) or (ReactorConfig(id="bus1", name="Reactor 1", bus=1),)
    return AgentConfig(
        name=data.get("name") or socket.gethostname(),
        data_dir=Path(data["data_dir"]) if "data_dir" in data else default_data_dir,
        api=ApiConfig(**data["api"]),
        journal=JournalConfig(**data["journal"]),
        discovery=DiscoveryConfig(**data["discovery"]),
        sampling=SamplingConfig(**data["sampling"]),
        reactors=reactors,
        calibration=CalibrationConfig(**data["calibration"]),
    )


def load_config(path: Path) -> AgentConfig:
    """Reads and validates a configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    return parse_config(raw)


def default_config(data_dir: Path) -> AgentConfig:
    """Every default, with the given data directory (used by `simulate`)."""
    return parse_config({}, default_data_dir=data_dir)
