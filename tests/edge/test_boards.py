"""The agent on the boards it is for: BeagleBone (i2c-omap) and Raspberry Pi (i2c-bcm2835).

Each board comes with the full sensor set, its cape EEPROMs at 0x54-0x57 bound
to the kernel and a TCA9548A at 0x70 that no configuration mentions. `scan` and
the real Agent must find every sensor, journal exactly what the chips measured,
and never write to a kernel-owned or unconfigured-multiplexer address.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from bioreactor_edge.agent import Agent
from bioreactor_edge.cli import main, scan_report
from bioreactor_edge.config import default_config
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.models import Reading
from bioreactor_edge.simulator.adapters import BEAGLEBONE, RASPBERRY_PI, Adapter
from bioreactor_edge.simulator.lab import CAPE_EEPROMS, UNCONFIGURED_MUX, build_board_bus
from bioreactor_edge.simulator.physics import ReactorModel, ReactorState

SPEED = 20.0  # simulated chips answer this many times faster than real ones
TIMING = Timing().scaled(SPEED)
KINDS = {"ph", "do", "orp", "ec", "rtd", "pmp", "sht4x", "ads1115"}
BOARDS = pytest.mark.parametrize("adapter", [BEAGLEBONE, RASPBERRY_PI], ids=lambda a: a.name)

ADC_LSB_V = 4.096 / 32768  # the driver's PGA: +/-4.096 V


def _ec(state: ReactorState) -> float:
    return state.conductivity_us_cm


def _salinity(state: ReactorState) -> float:
    return state.conductivity_us_cm / 1000 * 0.64


def _analog(channel: int) -> Callable[[ReactorState], float]:
    return lambda state: state.analog_v[channel]


# (sensor kind, quantity) -> (what the chip measures in the model's state,
# half the resolution of the chip's reply: the largest rounding error).
TRUTH: dict[tuple[str, str], tuple[Callable[[ReactorState], float], float]] = {
    ("ph", "ph"): (lambda s: s.ph, 0.0005),  # "7.012"
    ("do", "dissolved_oxygen"): (lambda s: s.dissolved_oxygen_mg_l, 0.005),  # "6.52"
    ("do", "oxygen_saturation"): (lambda s: s.oxygen_saturation_pct, 0.05),  # "95.1"
    ("orp", "orp"): (lambda s: s.orp_mv, 0.05),  # "251.3"
    ("ec", "conductivity"): (_ec, 0.5),  # "5004"
    ("ec", "total_dissolved_solids"): (lambda s: _ec(s) * 0.54, 0.5),
    ("ec", "salinity"): (_salinity, 0.005),
    ("ec", "specific_gravity"): (lambda s: 1.0 + _salinity(s) * 0.00075, 0.0005),
    ("rtd", "temperature"): (lambda s: s.temperature_c, 0.0005),  # "37.001"
    # SHT4x: T = -45 + 175 * raw / 65535, RH = -6 + 125 * raw / 65535.
    ("sht4x", "temperature"): (lambda s: s.air_temperature_c, 175 / 65535 / 2),
    ("sht4x", "humidity"): (lambda s: s.humidity_pct, 125 / 65535 / 2),
    **{("ads1115", f"voltage_{n}"): (_analog(n), ADC_LSB_V / 2) for n in range(4)},
}


class RecordingModel(ReactorModel):
    """A reactor that remembers every state a chip measured, with the wall time."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self.seen: list[tuple[float, ReactorState]] = []
        self._seen_lock = threading.Lock()

    def state(self) -> ReactorState:
        state = super().state()
        with self._seen_lock:
            self.seen.append((time.time(), state))
        return state

    def measured_before(self, time_ms: int) -> list[ReactorState]:
        # A reading is stamped when collected, after the chip measured it.
        with self._seen_lock:
            return [s for at, s in self.seen if time_ms / 1000 - 10 <= at <= time_ms / 1000 + 0.5]


def kind_of(sensor_id: str) -> str:
    return sensor_id.split("-")[-2]


def assert_exact(readings: list[Reading], model: RecordingModel) -> None:
    for reading in readings:
        if kind_of(reading.sensor) == "pmp":
            # The pump reports the volume it dispensed: nothing was dosed.
            assert (reading.quantity, reading.value) == ("total_volume", 0.0)
            continue
        truth, tolerance = TRUTH[kind_of(reading.sensor), reading.quantity]
        candidates = model.measured_before(reading.time_ms)
        assert any(abs(truth(s) - reading.value) <= tolerance + 1e-9 for s in candidates), (
            f"{reading.sensor} {reading.quantity} = {reading.value} was never measured"
        )


def assert_untouched(bus: object, owners: int) -> None:
    """Nothing written to the EEPROMs or the mux; each EEPROM probed once per bus owner."""
    for address in CAPE_EEPROMS:
        assert bus.writes_to(address) == 0, hex(address)  # type: ignore[attr-defined]
        assert bus.transactions_to(address) == owners, hex(address)  # type: ignore[attr-defined]
    assert bus.writes_to(UNCONFIGURED_MUX) == 0  # type: ignore[attr-defined]


@BOARDS
async def test_scan_shows_the_board_as_i2cdetect_would(adapter: Adapter) -> None:
    bus = build_board_bus(RecordingModel(seed=2), adapter=adapter, speed=SPEED, seed=2)
    report = await scan_report([("bus1", 1, None, None)], lambda _n: bus, TIMING)
    lines = report.splitlines()
    assert "40: -- -- -- -- 44 -- -- -- 48 -- -- -- -- -- -- --" in lines
    assert "50: -- -- -- -- UU UU UU UU -- -- -- -- -- -- -- --" in lines
    assert "60: -- 61 62 63 64 -- 66 67 -- -- -- -- -- -- -- --" in lines
    assert "70: 70 -- -- -- -- -- -- --                        " in lines
    rows = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  0x")}
    assert rows == {
        "0x44": "sht4x", "0x48": "ads1115",
        "0x54": "UU", "0x55": "UU", "0x56": "UU", "0x57": "UU",
        "0x61": "do", "0x62": "orp", "0x63": "ph", "0x64": "ec", "0x66": "rtd", "0x67": "pmp",
        "0x70": "unknown",
    }  # fmt: skip
    assert "multiplexer range" in next(line for line in lines if line.startswith("  0x70"))
    assert_untouched(bus, owners=1)


@BOARDS
async def test_run_finds_every_sensor_and_journals_the_chips_values(
    adapter: Adapter, tmp_path: Path
) -> None:
    model = RecordingModel(seed=6)
    bus = build_board_bus(model, adapter=adapter, speed=SPEED, seed=6)
    base = default_config(tmp_path)
    config = replace(base, sampling=replace(base.sampling, interval_s=1 / SPEED))
    agent = Agent(config, agent_id="d" * 16, raw_bus=lambda _n: bus, timing=TIMING)
    await agent.start()
    try:
        async with asyncio.timeout(60):
            while agent.discovering:
                await asyncio.sleep(0.05)
            await agent.rescan()  # later scans leave the EEPROMs and the mux alone too
            while True:
                readings, _ = await agent.journal.read_after(0, 100_000)
                takes = Counter(sensor for sensor, _ in {(r.sensor, r.time_ms) for r in readings})
                if {kind_of(s) for s in takes} == KINDS and min(takes.values()) >= 5:
                    break
                await asyncio.sleep(0.1)
        status = agent.status()
    finally:
        await agent.stop()

    found = {s["id"]: s for r in status["reactors"] for s in r["sensors"]}
    assert {kind_of(sensor_id) for sensor_id in found} == KINDS | {"unknown"}
    unknown = found["bus1-unknown-70"]
    assert (unknown["status"], unknown["last_error"]) == ("unknown", "mux_range")
    assert all(s["status"] == "online" for i, s in found.items() if i != "bus1-unknown-70")
    assert status["discovery"]["state"] == "idle"
    assert not [p for p in status["problems"] if p.startswith("sensor_error")]

    assert {r.quality for r in readings} <= {"good", "uncompensated"}
    assert_exact(readings, model)
    assert_untouched(bus, owners=1)


@BOARDS
def test_scan_command_on_a_simulated_board(
    adapter: Adapter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--board", adapter.name]) == 0
    out = capsys.readouterr().out
    assert "50: -- -- -- -- UU UU UU UU" in out
    for kind in KINDS:
        assert f" {kind} " in out, kind
