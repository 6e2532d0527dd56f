"""The agent id: hardware-derived, stable, not disclosing the raw serial."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bioreactor_edge.identity import agent_id, hardware_key

SERIAL = "00000000c0ffee42"
MACHINE_ID = "4c4c4544003510528033b2c04f4e4d32"
MAC = "b8:27:eb:12:34:56"


def make_net(root: Path, interfaces: dict[str, str]) -> Path:
    net = root / "net"
    net.mkdir()
    for name, mac in interfaces.items():
        (net / name).mkdir()
        (net / name / "address").write_text(mac + "\n")
    return net


@pytest.fixture
def hw(tmp_path: Path) -> dict[str, object]:
    serial = tmp_path / "serial-number"
    serial.write_bytes(SERIAL.encode() + b"\0")
    machine = tmp_path / "machine-id"
    machine.write_text(MACHINE_ID + "\n")
    net = make_net(tmp_path, {"lo": "00:00:00:00:00:00", "eth0": MAC})
    return {
        "serial_paths": (tmp_path / "missing-serial", serial),
        "machine_id_path": machine,
        "net_dir": net,
    }


def test_serial_first(hw: dict[str, object]) -> None:
    assert hardware_key(**hw) == "serial:" + SERIAL  # type: ignore[arg-type]


def test_machine_id_when_no_serial(hw: dict[str, object], tmp_path: Path) -> None:
    hw["serial_paths"] = (tmp_path / "nope",)
    assert hardware_key(**hw) == "machine-id:" + MACHINE_ID  # type: ignore[arg-type]


def test_empty_serial_file_falls_back(hw: dict[str, object], tmp_path: Path) -> None:
    empty = tmp_path / "empty-serial"
    empty.write_bytes(b"\0\0\n")
    hw["serial_paths"] = (empty,)
    assert hardware_key(**hw) == "machine-id:" + MACHINE_ID  # type: ignore[arg-type]


def test_mac_when_no_serial_or_machine_id(hw: dict[str, object], tmp_path: Path) -> None:
    hw["serial_paths"] = ()
    hw["machine_id_path"] = tmp_path / "no-machine-id"
    assert hardware_key(**hw) == "mac:" + MAC  # type: ignore[arg-type]


def test_mac_skips_loopback_and_zero(tmp_path: Path) -> None:
    net = make_net(
        tmp_path,
        {
            "lo": "00:00:00:00:00:01",
            "a0": "00:00:00:00:00:00",
            "wlan0": MAC,
            "zz": "aa:aa:aa:aa:aa:aa",
        },
    )
    key = hardware_key(serial_paths=(), machine_id_path=tmp_path / "none", net_dir=net)
    assert key == "mac:" + MAC


def test_nothing_available_raises(tmp_path: Path) -> None:
    net = make_net(tmp_path, {"lo": "00:00:00:00:00:00"})
    with pytest.raises(RuntimeError):
        agent_id(serial_paths=(), machine_id_path=tmp_path / "none", net_dir=net)
    with pytest.raises(RuntimeError):
        agent_id(
            serial_paths=(tmp_path / "x",),
            machine_id_path=tmp_path / "none",
            net_dir=tmp_path / "no-net-dir",
        )


def test_agent_id_shape_and_stable(hw: dict[str, object]) -> None:
    first = agent_id(**hw)  # type: ignore[arg-type]
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert agent_id(**hw) == first  # type: ignore[arg-type]
    assert SERIAL not in first
    assert SERIAL[-8:] not in first


def test_agent_id_depends_on_source(hw: dict[str, object], tmp_path: Path) -> None:
    by_serial = agent_id(**hw)  # type: ignore[arg-type]
    hw["serial_paths"] = ()
    by_machine = agent_id(**hw)  # type: ignore[arg-type]
    hw["machine_id_path"] = tmp_path / "none"
    by_mac = agent_id(**hw)  # type: ignore[arg-type]
    assert len({by_serial, by_machine, by_mac}) == 3
    for value in (by_serial, by_machine, by_mac):
        assert re.fullmatch(r"[0-9a-f]{16}", value)
        assert MACHINE_ID[:16] not in value
        assert MAC.replace(":", "") not in value


def test_different_serials_different_ids(tmp_path: Path) -> None:
    ids = set()
    for i in range(20):
        path = tmp_path / f"serial{i}"
        path.write_text(f"{SERIAL[:-2]}{i:02x}")
        ids.add(agent_id(serial_paths=(path,), machine_id_path=tmp_path / "n", net_dir=tmp_path))
    assert len(ids) == 20


def test_id_survives_unrelated_changes(hw: dict[str, object], tmp_path: Path) -> None:
    before = agent_id(**hw)  # type: ignore[arg-type]
    # A new MAC and a new machine id (reinstall) do not change a serial-derived id.
    (tmp_path / "machine-id").write_text("ffffffffffffffffffffffffffffffff\n")
    (tmp_path / "net" / "eth0" / "address").write_text("02:00:00:00:00:01\n")
    assert agent_id(**hw) == before  # type: ignore[arg-type]
