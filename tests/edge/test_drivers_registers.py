"""SHT4x and ADS1115 drivers against simulated register chips."""

from __future__ import annotations

import asyncio

import pytest

from bioreactor_edge.bus import BusNak, BusOwner
from bioreactor_edge.drivers import create_driver, default_identity
from bioreactor_edge.drivers.ads1115 import POWER_ON_CONFIG, identify_ads1115
from bioreactor_edge.drivers.base import Driver, DriverError
from bioreactor_edge.drivers.sht4x import crc8, identify_sht4x, words
from bioreactor_edge.models import Measurement, Quality
from bioreactor_edge.simulator.chips import Ads1115Chip, Sht4xChip
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.simulator.virtual_bus import VirtualBus


async def read(driver: Driver) -> list[Measurement]:
    await driver.start(None)
    await asyncio.sleep(driver.ready_after_s)
    return await driver.collect()


def test_crc8_matches_the_datasheet_example() -> None:
    assert crc8(b"\xbe\xef") == 0x92
    assert words(b"\xbe\xef\x92\x00\x00\x81", "frame") == (0xBEEF, 0x0000)


@pytest.mark.parametrize(
    "frame", [b"\xbe\xef\x93\x00\x00\x81", b"\xbe\xef\x92\x00\x01\x81", b"\xbe\xef\x92"]
)
def test_bad_frames_are_garbage(frame: bytes) -> None:
    with pytest.raises(DriverError) as err:
        words(frame, "frame")
    assert err.value.code == "garbage"


async def test_sht4x_reads_temperature_and_humidity(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    vbus.add(Sht4xChip(0x44, model))
    driver = create_driver(owner.device(0x44), default_identity("sht4x"))
    temperature, humidity = await read(driver)
    expected = model.state()
    assert temperature.quantity == "temperature"
    assert temperature.value == pytest.approx(expected.air_temperature_c, abs=0.2)
    assert humidity.quantity == "humidity"
    assert humidity.value == pytest.approx(expected.humidity_pct, abs=1.0)
    assert temperature.quality is humidity.quality is Quality.GOOD


async def test_sht4x_crc_error_is_garbage(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = Sht4xChip(0x44, model)
    vbus.add(chip)
    driver = create_driver(owner.device(0x44), default_identity("sht4x"))
    chip.faults.garbage = True
    for _ in range(20):  # every garbage frame is caught, not just a lucky one
        with pytest.raises(DriverError) as err:
            await read(driver)
        assert err.value.code == "garbage"


async def test_sht4x_humidity_is_cropped_to_the_physical_range(
    owner: BusOwner, vbus: VirtualBus
) -> None:
    class Saturated(Sht4xChip):
        def on_write(self, data: bytes) -> None:
            self._frame = (
                bytes.fromhex("6666")
                + bytes([crc8(bytes.fromhex("6666"))])
                + (b"\xff\xff" + bytes([crc8(b"\xff\xff")]))
            )

    vbus.add(Saturated(0x45, ReactorModel(seed=1)))
    driver = create_driver(owner.device(0x45), default_identity("sht4x"))
    measurements = await read(driver)
    assert measurements[1] == Measurement("humidity", 100.0)  # -6 + 125 = 119 % raw


async def test_sht4x_nak(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    chip = Sht4xChip(0x44, model)
    vbus.add(chip)
    chip.faults.nak = True
    with pytest.raises(BusNak):
        await read(create_driver(owner.device(0x44), default_identity("sht4x")))
    # Reading without a measurement is not acknowledged either, as on the real chip.
    chip.faults.nak = False
    with pytest.raises(BusNak):
        await owner.device(0x44).read(6)


async def test_sht4x_identification(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    chip = Sht4xChip(0x44, model)
    vbus.add(chip)
    identity = await identify_sht4x(owner.device(0x44))
    assert identity is not None
    assert identity.kind == "sht4x"
    chip.faults.garbage = True
    assert await identify_sht4x(owner.device(0x44)) is None


async def test_ads1115_reads_four_channels(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = Ads1115Chip(0x48, model)
    vbus.add(chip)
    driver = create_driver(owner.device(0x48), default_identity("ads1115"))
    measurements = await read(driver)
    expected = model.state().analog_v
    assert [m.quantity for m in measurements] == [f"voltage_{n}" for n in range(4)]
    for measurement, volts in zip(measurements, expected, strict=True):
        assert measurement.value == pytest.approx(volts, abs=0.01)
        assert measurement.quality is Quality.GOOD
    # The power-on configuration is back, so the chip is recognised after a restart.
    assert chip.config == POWER_ON_CONFIG
    assert await identify_ads1115(owner.device(0x48)) is not None


async def test_ads1115_negative_full_scale(owner: BusOwner, vbus: VirtualBus) -> None:
    class Negative(Ads1115Chip):
        def _convert(self, config: int) -> None:
            self.conversion = 0x8000

    vbus.add(Negative(0x49, ReactorModel(seed=1)))
    measurements = await read(create_driver(owner.device(0x49), default_identity("ads1115")))
    assert all(m == Measurement(m.quantity, -4.096) for m in measurements)


async def test_ads1115_garbage(owner: BusOwner, vbus: VirtualBus, model: ReactorModel) -> None:
    chip = Ads1115Chip(0x48, model)
    vbus.add(chip)
    chip.faults.garbage = True
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x48), default_identity("ads1115")))
    assert err.value.code == "garbage"
    assert await identify_ads1115(owner.device(0x48)) is None


async def test_ads1115_conversion_that_never_ends(owner: BusOwner, vbus: VirtualBus) -> None:
    class Stuck(Ads1115Chip):
        def on_read(self, length: int) -> bytes:
            self.config &= 0x7FFF  # always "converting"
            return super().on_read(length)

    vbus.add(Stuck(0x4A, ReactorModel(seed=1)))
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x4A), default_identity("ads1115")))
    assert err.value.code == "timeout"


async def test_ads1115_not_identified_with_another_configuration(
    owner: BusOwner, vbus: VirtualBus, model: ReactorModel
) -> None:
    chip = Ads1115Chip(0x4B, model)
    chip.config = 0x8483
    vbus.add(chip)
    assert await identify_ads1115(owner.device(0x4B)) is None
