"""Golden transcripts from the datasheets, run against the chip models and the drivers.

Model side: the simulated chip answers exactly the documented bytes, and not
before the documented processing delay. Driver side: a scripted bus replays the
transcript; the driver must send exactly the documented commands and make of
the replies what the datasheet says they mean.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any

import pytest

from bioreactor_edge.bus import BusNak, BusOwner
from bioreactor_edge.drivers import create_driver, default_identity, identify
from bioreactor_edge.drivers.base import DriverError, Timing
from bioreactor_edge.drivers.ezo import EzoDriver, PhSlope, calibrate, calibration_points, ph_slope
from bioreactor_edge.simulator.ads1115 import Ads1115Chip
from bioreactor_edge.simulator.base import SimChip
from bioreactor_edge.simulator.ezo import EzoChip
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.sht4x import Sht4xChip
from bioreactor_edge.simulator.tca9548a import Tca9548aMux
from tests.edge.scripted_bus import EzoTranscript, ScriptedBus, Step
from tests.edge.transcripts import Transcript, ezo, registers as register_chips

TRANSCRIPTS = ezo.TRANSCRIPTS + register_chips.TRANSCRIPTS
EZO_READ_LENGTH = 31  # what Atlas's sample code reads
DRIVER_TIMING = Timing().scaled(1000.0)
EARLY = 0.999  # a read at this fraction of the documented delay is too early


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def model_chip(transcript: Transcript, clock: FakeClock) -> SimChip:
    model = ReactorModel(seed=1, clock=clock)
    address = transcript.address
    chip: SimChip
    if transcript.chip == "sht4x":
        chip = Sht4xChip(address, model, clock=clock)
    elif transcript.chip == "ads1115":
        chip = Ads1115Chip(address, model, clock=clock)
    elif transcript.chip == "tca9548a":
        chip = Tca9548aMux(address)
    else:
        chip = EzoChip(transcript.chip, address, model, firmware=transcript.firmware, clock=clock)
    for attribute, value in transcript.state.items():
        assert hasattr(chip, attribute), f"{transcript.name}: model has no {attribute}"
        setattr(chip, attribute, value)
    return chip


def form(reply: bytes) -> re.Pattern[bytes]:
    """The documented reply with every number's digits generalised, decimals kept."""
    pattern = re.sub(
        rb"-?\d+\\\.(\d+)",
        lambda m: rb"-?\d+\.\d{" + str(len(m.group(1))).encode() + rb"}",
        re.escape(reply),
    )
    return re.compile(pattern)


def read(chip: SimChip, transcript: Transcript, length: int) -> bytes:
    if transcript.chip in ezo.KINDS:
        return chip.on_read(EZO_READ_LENGTH)
    return chip.on_read(length)


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t.name)
def test_model_answers_the_datasheet_bytes(transcript: Transcript) -> None:
    clock = FakeClock()
    chip = model_chip(transcript, clock)
    is_ezo = transcript.chip in ezo.KINDS
    for exchange in transcript.exchanges:
        chip.on_write(exchange.command)
        start = clock.now
        if exchange.wait_s > 0:
            clock.now = start + exchange.wait_s * EARLY
            if is_ezo:
                assert read(chip, transcript, 1)[0] == 254, "answered before the documented delay"
            else:
                with pytest.raises(BusNak):  # SHT4x: no acknowledge while measuring
                    read(chip, transcript, len(exchange.reply))
        clock.now = start + exchange.wait_s
        got = read(chip, transcript, len(exchange.reply))
        expected = exchange.reply.ljust(len(got), b"\0") if is_ezo else exchange.reply
        if exchange.measured:
            assert form(exchange.reply).fullmatch(got.rstrip(b"\0") + b"\0"), (got, expected)
        else:
            assert got == expected
        if is_ezo:
            assert read(chip, transcript, 1)[0] == 255  # a reply is sent once


async def run_driver(transcript: Transcript) -> Any:
    steps = [Step(exchange.command, [exchange.reply]) for exchange in transcript.exchanges]
    script = EzoTranscript(steps)
    owner = BusOwner(ScriptedBus({transcript.address: script}), 1, timeout_s=2.0)
    device = owner.device(transcript.address)
    try:
        if transcript.driver == "identify":
            identity = await identify(device, timing=DRIVER_TIMING)
            result: Any = None if identity is None else (identity.kind, identity.firmware)
        else:
            identity = replace(default_identity(transcript.chip), firmware=transcript.firmware)
            driver = create_driver(device, identity, timing=DRIVER_TIMING)
            if transcript.driver == "setup":
                await driver.setup()
                result = [quantity.key for quantity in driver.quantities]
            else:
                await driver.start(None)
                await asyncio.sleep(driver.ready_after_s)
                try:
                    result = [m.value for m in await driver.collect()]
                except DriverError as err:
                    result = err.code
    finally:
        await owner.close()
    assert script.finished, f"{transcript.name}: driver did not send {script.steps}"
    return result


DRIVEN = [t for t in TRANSCRIPTS if t.driver is not None]


@pytest.mark.parametrize("transcript", DRIVEN, ids=lambda t: t.name)
async def test_driver_speaks_the_datasheet_bytes(transcript: Transcript) -> None:
    result = await run_driver(transcript)
    if (
        isinstance(transcript.expect, list)
        and transcript.expect
        and not isinstance(transcript.expect[0], str)
    ):
        assert result == pytest.approx(transcript.expect)
    else:
        assert result == transcript.expect


def test_every_transcript_cites_its_source() -> None:
    names = [t.name for t in TRANSCRIPTS]
    assert len(names) == len(set(names))
    for transcript in TRANSCRIPTS:
        assert transcript.source and transcript.exchanges
        assert transcript.chip in ezo.KINDS | {"sht4x", "ads1115", "tca9548a"}


# What the calibration wizard asks the driver, step by step, for each calibration
# transcript; each step's command and reply must be the datasheet's bytes.
CALIBRATION_STEPS: dict[str, list[tuple[str, Any, Any]]] = {
    "ph-calibration-three-points": [
        ("point", "mid", 7.0),
        ("point", "low", 4.0),
        ("point", "high", 10.0),
        ("points", None, 3),
        ("slope", None, PhSlope(99.7, 100.3, -0.89)),
        ("point", "mid", 7.0),  # a new midpoint clears the other two
        ("points", None, 1),
    ],
    "do-calibration-atmospheric-zero": [
        ("point", "atmospheric", None),
        ("point", "zero", None),
        ("points", None, 2),
    ],
    "ec-calibration-dry-low-high": [
        ("point", "dry", None),
        ("points", None, 0),
        ("point", "low", 12880.0),
        ("point", "high", 80000.0),
        ("points", None, 2),
    ],
}


@pytest.mark.parametrize(
    "transcript",
    [t for t in TRANSCRIPTS if t.name in CALIBRATION_STEPS],
    ids=lambda t: t.name,
)
async def test_driver_calibrates_with_the_datasheet_bytes(transcript: Transcript) -> None:
    steps = [Step(exchange.command, [exchange.reply]) for exchange in transcript.exchanges]
    script = EzoTranscript(steps)
    owner = BusOwner(ScriptedBus({transcript.address: script}), 1, timeout_s=2.0)
    identity = replace(default_identity(transcript.chip), firmware=transcript.firmware)
    driver = create_driver(owner.device(transcript.address), identity, timing=DRIVER_TIMING)
    assert isinstance(driver, EzoDriver)
    try:
        for operation, point, expected in CALIBRATION_STEPS[transcript.name]:
            if operation == "point":
                await calibrate(driver, point, expected)
            elif operation == "points":
                assert await calibration_points(driver) == expected
            else:
                assert await ph_slope(driver) == expected
    finally:
        await owner.close()
    assert script.finished, f"{transcript.name}: driver did not send {script.steps}"


def test_every_calibration_transcript_is_replayed_by_the_driver() -> None:
    calibrations = {t.name for t in TRANSCRIPTS if "calibration" in t.name}
    assert calibrations == set(CALIBRATION_STEPS)
