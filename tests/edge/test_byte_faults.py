"""A long run of the real agent over a bus that goes wrong at the byte level.

On the Raspberry Pi adapter model (reply bytes with the top bit set, NAKs
from clock stretching) come NAK bursts, line noise, EZO circuits stuck at 254, and chips removed and
re-inserted before a transaction, between a command and its read, or in the
middle of a read. At the end every sensor handler is still running, and every
value journaled as `good` is one the chip model actually sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bioreactor_edge.agent import Agent
from bioreactor_edge.config import default_config
from bioreactor_edge.drivers.base import Timing
from bioreactor_edge.models import NewReading
from bioreactor_edge.simulator.adapters import RASPBERRY_PI
from bioreactor_edge.simulator.ads1115 import Ads1115Chip
from bioreactor_edge.simulator.byte_faults import ByteFaults, FaultRates
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.sht4x import Sht4xChip
from bioreactor_edge.simulator.virtual_bus import VirtualBus
from tests.support.fault_report import record

SPEED = 100.0  # chips answer 100 times faster than real ones
RUN_S = 12.0
# What the chips report, by quantity key of the drivers; ADC volts at the driver's PGA.
ADC_LSB_V = 4.096 / 32768
# EZO replies that carry the measurement, by command verb.
MEASURING_VERBS = {"R", "RT", "TV"}


def sent_values(chip: object, keys: Sequence[str]) -> dict[str, set[float]]:
    """Every value `chip` sent for each quantity, from the model's own records."""
    sent: dict[str, set[float]] = {key: set() for key in keys}
    if isinstance(chip, EzoChip):
        for verb, text in list(chip.answers):
            if verb not in MEASURING_VERBS:
                continue
            fields = text.split(",")[1:] if text.startswith("?") else text.split(",")
            if len(fields) == len(keys):
                for key, field in zip(keys, fields, strict=True):
                    sent[key].add(float(field))
    elif isinstance(chip, Sht4xChip):
        for t_raw, rh_raw in chip.measurements:
            sent["temperature"].add(-45.0 + 175.0 * t_raw / 65535)
            sent["humidity"].add(min(100.0, max(0.0, -6.0 + 125.0 * rh_raw / 65535)))
    elif isinstance(chip, Ads1115Chip):
        volts = {int.from_bytes(raw.to_bytes(2, "big"), "big", signed=True) * ADC_LSB_V
                 for _, raw in chip.conversions}  # fmt: skip
        for key in keys:
            sent[key] = volts
    return sent


def was_sent(value: float, candidates: set[float]) -> bool:
    return any(math.isclose(value, c, rel_tol=1e-9, abs_tol=1e-12) for c in candidates)


async def test_byte_faults_never_journal_a_wrong_good_value(tmp_path: Path) -> None:
    # The Raspberry Pi's adapter adds its own glitches: top bits set, clock-stretch NAKs.
    bus: VirtualBus = build_reactor_bus(
        ReactorModel(seed=11), sensors=8, speed=SPEED, seed=11, adapter=RASPBERRY_PI
    )
    faults = ByteFaults(FaultRates(unplug=0.012), seed=11)
    journaled: list[NewReading] = []
    base = default_config(tmp_path)
    config = replace(base, sampling=replace(base.sampling, interval_s=1 / SPEED))
    agent = Agent(
        config,
        agent_id="f" * 16,
        raw_bus=lambda _number: bus,
        timing=Timing().scaled(SPEED),
        on_journaled=journaled.extend,
    )
    await agent.start()
    try:
        async with asyncio.timeout(20):
            while agent.discovering:
                await asyncio.sleep(0.05)
        bus.byte_faults = faults  # after discovery: the run is about sampling
        started, transactions = time.monotonic(), bus.transactions
        await asyncio.sleep(RUN_S)
        handlers = [h for r in agent.reactors.values() for h in r.sensors.values()]
        alive = [h.id for h in handlers if h.task is not None and not h.task.done()]
        status = agent.status()
    finally:
        await agent.stop()
    transactions = bus.transactions - transactions
    elapsed = time.monotonic() - started

    print(f"\n{transactions} transactions in {elapsed:.1f} s, faults {dict(faults.injected)}")
    assert len(handlers) == 8
    assert sorted(alive) == sorted(h.id for h in handlers), "a sensor handler died"
    assert "reactors" in status
    assert transactions > 2000, f"only {transactions} transactions in {elapsed:.1f} s"
    assert set(faults.injected) >= {
        "nak_burst",
        "garbage",
        "stuck_busy",
        "unplug_before",
        "unplug_after_write",
        "unplug_mid_read",
    }, faults.injected

    good = [r for r in journaled if r.quality == "good"]
    wrong: list[NewReading] = []
    per_sensor: Counter[str] = Counter()
    for handler in handlers:
        assert handler.driver is not None
        keys = [q.key for q in handler.driver.quantities]
        sent = sent_values(bus.chip(handler.address), keys)
        for reading in (r for r in good if r.sensor == handler.id):
            per_sensor[handler.id] += 1
            if not was_sent(reading.value, sent[reading.quantity]):
                wrong.append(reading)
    record(
        "bus byte faults (lost = wrong values journaled good)",
        cycles=sum(faults.injected.values()),
        generated=len(good),
        delivered=len(good) - len(wrong),
        lost=len(wrong),
        duplicated=0,
    )
    assert not wrong, wrong[:5]
    # Every sensor still got good readings through the faults.
    assert set(per_sensor) == {h.id for h in handlers}, per_sensor
