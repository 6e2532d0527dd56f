"""The agent id: derived from the board's hardware, stable across restarts,
IP changes and reinstalls of the agent, and not disclosing the raw serial."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

# Raspberry Pi (device tree) and BeagleBone Black (board EEPROM) serial numbers.
SERIAL_PATHS = (
    Path("/proc/device-tree/serial-number"),
    Path("/sys/firmware/devicetree/base/serial-number"),
    Path("/sys/bus/nvmem/devices/0-00500/nvmem"),
)
_SALT = b"bioreactor-edge agent id v1\0"


def _read(path: Path, limit: int = 256) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(limit)
    except OSError:
        return ""
    return raw.replace(b"\0", b"").decode("ascii", errors="ignore").strip()


def _first_mac(net_dir: Path) -> str:
    try:
        interfaces = sorted(p for p in net_dir.iterdir() if p.name != "lo")
    except OSError:
        return ""
    for interface in interfaces:
        mac = _read(interface / "address")
        if mac and mac != "00:00:00:00:00:00":
            return mac
    return ""


def hardware_key(
    *,
    serial_paths: Sequence[Path] = SERIAL_PATHS,
    machine_id_path: Path = Path("/etc/machine-id"),
    net_dir: Path = Path("/sys/class/net"),
) -> str:
    """The most stable hardware identity available: board serial, machine id, then MAC."""
    for path in serial_paths:
        serial = _read(path)
        if serial:
            return "serial:" + serial
    machine_id = _read(machine_id_path)
    if machine_id:
        return "machine-id:" + machine_id
    mac = _first_mac(net_dir)
    if mac:
        return "mac:" + mac
    raise RuntimeError("no board serial, machine id or network address to derive an agent id")


def agent_id(
    *,
    serial_paths: Sequence[Path] = SERIAL_PATHS,
    machine_id_path: Path = Path("/etc/machine-id"),
    net_dir: Path = Path("/sys/class/net"),
) -> str:
    """16 hex characters: a salted hash of `hardware_key`."""
    key = hardware_key(serial_paths=serial_paths, machine_id_path=machine_id_path, net_dir=net_dir)
    return hashlib.sha256(_SALT + key.encode()).hexdigest()[:16]
