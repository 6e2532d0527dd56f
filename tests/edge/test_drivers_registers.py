"""SHT4x and ADS1115 drivers against scripted register chips."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from bioreactor_edge.bus import BusNak, BusOwner
from bioreactor_edge.drivers import ads1115, create_driver, default_identity, identify
from bioreactor_edge.drivers.ads1115 import identify_ads1115
from bioreactor_edge.drivers.base import Driver, DriverError, Identity, Timing
from bioreactor_edge.drivers.sht4x import crc8, identify_sht4x, read_serial, words
from bioreactor_edge.models import Measurement, Quality
from tests.edge.scripted_bus import SYNTAX_ERROR, EzoTranscript, ScriptedBus, ScriptedChip, Step, ok


@pytest.fixture
def bus() -> ScriptedBus:
    return ScriptedBus({})


@pytest.fixture
def raw_bus(bus: ScriptedBus) -> ScriptedBus:
    return bus


async def read(driver: Driver) -> list[Measurement]:
    await driver.start(None)
    await asyncio.sleep(driver.ready_after_s)
    return await driver.collect()


def frame(first: int, second: int) -> bytes:
    """Two words, each followed by its Sensirion CRC, as the SHT4x sends them."""
    a, b = first.to_bytes(2, "big"), second.to_bytes(2, "big")
    return a + bytes([crc8(a)]) + b + bytes([crc8(b)])


# --- SHT4x -------------------------------------------------------------------------------


@dataclass
class Sht4x(ScriptedChip):
    """Answers a command with `frames[command]` after NAKing `busy_reads` reads."""

    frames: dict[int, bytes]
    busy_reads: int = 0
    _pending: bytes | None = None
    _busy: int = 0

    def on_write(self, data: bytes) -> None:
        self._pending = self.frames[data[0]]
        self._busy = self.busy_reads

    def on_read(self, length: int) -> bytes:
        if self._pending is None or self._busy > 0:
            self._busy -= 1
            raise BusNak("busy")  # the SHT4x NAKs the read header while processing
        pending, self._pending = self._pending, None
        return pending[:length]


def test_crc8_matches_the_datasheet_example() -> None:
    # SHT4x datasheet, "Checksum calculation": CRC(0xBEEF) = 0x92.
    assert crc8(b"\xbe\xef") == 0x92
    assert words(b"\xbe\xef\x92\x00\x00\x81", "frame") == (0xBEEF, 0x0000)


@pytest.mark.parametrize(
    "raw", [b"\xbe\xef\x93\x00\x00\x81", b"\xbe\xef\x92\x00\x01\x81", b"\xbe\xef\x92"]
)
def test_bad_frames_are_garbage(raw: bytes) -> None:
    with pytest.raises(DriverError) as err:
        words(raw, "frame")
    assert err.value.code == "garbage"


@pytest.mark.parametrize("busy_reads", [0, 2])
async def test_sht4x_reads_temperature_and_humidity(
    owner: BusOwner, bus: ScriptedBus, busy_reads: int
) -> None:
    # 0x6666 / 65535 = 0.4: T = -45 + 175 * 0.4 = 25 °C, RH = -6 + 125 * 0.4 = 44 %.
    bus.chips[0x44] = Sht4x({0xFD: frame(0x6666, 0x6666)}, busy_reads=busy_reads)
    driver = create_driver(owner.device(0x44), default_identity("sht4x"))
    temperature, humidity = await read(driver)
    assert temperature == Measurement("temperature", pytest.approx(25.0))
    assert humidity == Measurement("humidity", pytest.approx(44.0))
    assert temperature.quality is humidity.quality is Quality.GOOD


async def test_sht4x_that_stays_busy_is_a_nak(owner: BusOwner, bus: ScriptedBus) -> None:
    bus.chips[0x44] = Sht4x({0xFD: frame(0x6666, 0x6666)}, busy_reads=10)
    with pytest.raises(BusNak):
        await read(create_driver(owner.device(0x44), default_identity("sht4x")))


async def test_sht4x_crc_error_is_garbage(owner: BusOwner, bus: ScriptedBus) -> None:
    bad = bytearray(frame(0x6666, 0x6666))
    bad[4] ^= 0x01
    bus.chips[0x44] = Sht4x({0xFD: bytes(bad)})
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x44), default_identity("sht4x")))
    assert err.value.code == "garbage"


async def test_sht4x_humidity_is_cropped_to_the_physical_range(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    bus.chips[0x45] = Sht4x({0xFD: frame(0x6666, 0xFFFF)})  # -6 + 125 = 119 % raw
    measurements = await read(create_driver(owner.device(0x45), default_identity("sht4x")))
    assert measurements[1] == Measurement("humidity", 100.0)


async def test_sht4x_serial_number_waits_10_ms_and_retries_busy_reads(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    bus.chips[0x44] = Sht4x({0x89: frame(0x1234, 0x5678)}, busy_reads=1)
    assert await read_serial(owner.device(0x44)) == 0x12345678
    (written_at, *_), (first_read_at, *_) = bus.events[0], bus.events[1]
    assert bus.events[0][1:] == ("write", 0x44, b"\x89")
    assert first_read_at - written_at >= 0.010
    assert [kind for _, kind, _, _ in bus.events] == ["write", "read", "read"]


async def test_sht4x_identification(owner: BusOwner, bus: ScriptedBus) -> None:
    bus.chips[0x44] = Sht4x({0x89: frame(0x1234, 0x5678)}, busy_reads=2)
    assert await identify_sht4x(owner.device(0x44)) == Identity("sht4x", "SHT4x", None)
    bus.chips[0x45] = Sht4x({0x89: b"\x12\x34\x00\x56\x78\x00"})  # CRCs wrong
    assert await identify_sht4x(owner.device(0x45)) is None
    assert await identify_sht4x(owner.device(0x46)) is None  # nobody there


# --- ADS1115 -----------------------------------------------------------------------------

LO_THRESH_RESET, HI_THRESH_RESET, CONFIG_RESET = 0x8000, 0x7FFF, 0x8583  # datasheet 9.6


@dataclass
class Ads1115(ScriptedChip):
    """Registers behind a pointer; a config write with OS set converts `inputs[channel]`.

    `busy_polls` config reads report "converting" (OS = 0) before each result.
    """

    inputs: tuple[int, int, int, int] = (0x0000, 0x4000, 0x7FFF, 0xFFFF)
    busy_polls: int = 0
    registers: dict[int, int] = field(
        default_factory=lambda: {0: 0, 1: CONFIG_RESET, 2: LO_THRESH_RESET, 3: HI_THRESH_RESET}
    )
    register_writes: list[tuple[int, int]] = field(default_factory=list)
    converting: threading.Event = field(default_factory=threading.Event)
    _pointer: int = 0
    _busy: int = 0

    def on_write(self, data: bytes) -> None:
        self._pointer = data[0] & 0x03
        if len(data) == 3:
            value = (data[1] << 8) | data[2]
            self.register_writes.append((self._pointer, value))
            self.registers[self._pointer] = value | 0x8000 if self._pointer == 1 else value
            if self._pointer == 1 and value & 0x8000:
                channel = ((value >> 12) & 0x07) - 4
                self.registers[0] = self.inputs[channel]
                self._busy = self.busy_polls
                self.converting.set()

    def on_read(self, length: int) -> bytes:
        value = self.registers[self._pointer]
        if self._pointer == 1 and self._busy > 0:
            self._busy -= 1
            value &= 0x7FFF
        return value.to_bytes(2, "big")[:length]


async def test_ads1115_is_identified_by_its_threshold_registers_without_writing(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    chip = Ads1115()
    chip.registers[1] = 0x0483  # whatever config it was left with does not matter
    bus.chips[0x48] = chip
    assert await identify_ads1115(owner.device(0x48)) == Identity("ads1115", "ADS1115", None)
    assert chip.register_writes == []
    assert set(bus.writes(0x48)) == {b"\x02", b"\x03"}  # register pointers only


@pytest.mark.parametrize(("lo", "hi"), [(0x4B00, 0x5000), (0x8000, 0x7FF0), (0x0000, 0x7FFF)])
async def test_other_chips_at_ads1115_addresses_are_not_taken_for_one(
    owner: BusOwner, bus: ScriptedBus, lo: int, hi: int
) -> None:
    chip = Ads1115()  # 0x4B00 / 0x5000: a TMP102's T_low / T_high reset values
    chip.registers[2], chip.registers[3] = lo, hi
    bus.chips[0x49] = chip
    assert await identify_ads1115(owner.device(0x49)) is None
    assert await identify_ads1115(owner.device(0x4A)) is None  # nobody there


async def test_ads1115_reads_four_channels_and_restores_its_config(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    chip = Ads1115(busy_polls=2)
    chip.registers[1] = 0x8483  # a config someone else chose
    bus.chips[0x48] = chip
    measurements = await read(create_driver(owner.device(0x48), default_identity("ads1115")))
    assert [m.quantity for m in measurements] == [f"voltage_{n}" for n in range(4)]
    # 0xFFFF: one LSB below GND, the ADC's own offset.
    assert [m.value for m in measurements] == pytest.approx(
        [0.0, 2.048, 4.096 - 0.000125, -0.000125]
    )
    assert [m.quality for m in measurements] == [Quality.GOOD] * 4
    # MUX AIN0..AIN3 vs GND, PGA 4.096 V, single-shot, 128 SPS, comparator off (9.6.3).
    assert chip.register_writes == [
        (1, 0xC383), (1, 0xD383), (1, 0xE383), (1, 0xF383), (1, 0x0483)
    ]  # fmt: skip
    assert chip.registers[1] == 0x8483


@pytest.mark.parametrize("code", [0x8000, 0xFFDF, 0xC1A5])
async def test_ads1115_single_ended_code_far_below_gnd_is_garbage(
    owner: BusOwner, bus: ScriptedBus, code: int
) -> None:
    # A single-ended input cannot be below GND: such a code is a corrupted transfer
    # (e.g. a Raspberry Pi top-bit glitch), never a good reading.
    chip = Ads1115(inputs=(0x1000, code, 0x1000, 0x1000))
    bus.chips[0x48] = chip
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x48), default_identity("ads1115")))
    assert err.value.code == "garbage"
    assert "below GND" in str(err.value)
    assert chip.registers[1] == CONFIG_RESET


async def test_ads1115_config_is_restored_when_sampling_is_cancelled(
    owner: BusOwner, bus: ScriptedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ads1115, "CONVERSION_TIMEOUT_S", 60.0)
    chip = Ads1115(busy_polls=1_000_000)  # converts for as long as the test wants
    bus.chips[0x48] = chip
    driver = create_driver(owner.device(0x48), default_identity("ads1115"))
    await driver.start(None)
    task = asyncio.create_task(driver.collect())
    while not chip.converting.is_set():
        await asyncio.sleep(0.001)
    assert chip.registers[1] & 0x7FFF == 0x4383  # channel 0 set up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert chip.register_writes[-1] == (1, CONFIG_RESET & 0x7FFF)
    assert chip.registers[1] == CONFIG_RESET


async def test_ads1115_conversion_that_never_ends_times_out_and_restores(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    chip = Ads1115(busy_polls=1_000_000)
    bus.chips[0x4A] = chip
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x4A), default_identity("ads1115")))
    assert err.value.code == "timeout"
    assert chip.registers[1] == CONFIG_RESET


async def test_ads1115_config_that_does_not_read_back_is_garbage(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    class Stubborn(Ads1115):
        def on_read(self, length: int) -> bytes:
            if self._pointer == 1:
                return b"\x85\x83"  # ignores every write
            return super().on_read(length)

    chip = Stubborn()
    bus.chips[0x4B] = chip
    with pytest.raises(DriverError) as err:
        await read(create_driver(owner.device(0x4B), default_identity("ads1115")))
    assert err.value.code == "garbage"
    assert chip.register_writes[-1] == (1, CONFIG_RESET & 0x7FFF)


# --- which identification runs where ------------------------------------------------------


async def test_register_chips_never_receive_an_ezo_command(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    bus.chips[0x44] = Sht4x({0x89: frame(0x1234, 0x5678)})
    bus.chips[0x48] = Ads1115()
    assert await identify(owner.device(0x44)) == Identity("sht4x", "SHT4x", None)
    assert await identify(owner.device(0x48)) == Identity("ads1115", "ADS1115", None)
    assert bus.writes(0x44) == [b"\x89"]
    assert set(bus.writes(0x48)) == {b"\x02", b"\x03"}


async def test_an_ezo_circuit_moved_to_a_register_chip_address_is_still_found(
    owner: BusOwner, bus: ScriptedBus
) -> None:
    bus.chips[0x44] = EzoTranscript([Step(b"\x89", [SYNTAX_ERROR]), Step(b"i", [ok("?I,pH,2.16")])])
    identity = await identify(owner.device(0x44), timing=Timing(command_s=0.001))
    assert identity == Identity("ph", "EZO-pH", "2.16")
