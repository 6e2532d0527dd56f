"""Finding chips: scan a bus (or a multiplexer channel) and identify what answers."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from .bus import MUX_ADDRESSES, BusError, BusNak, BusOwner, BusTimeout, I2CDevice, Presence
from .drivers import identify, sht4x
from .drivers.base import DEFAULT_TIMING, DriverError, Identity, Timing

_LOGGER = logging.getLogger(__name__)

# 0x00-0x07 and 0x78-0x7F are reserved by the I2C specification.
SCAN_ADDRESSES: range = range(0x08, 0x78)

# A multiplexer channel of a bus, or None for the main bus.
Place = tuple[int, int] | None
# Identification is asked this often before an address is called unknown: a
# Raspberry Pi's controller can lose one reply to clock stretching.
IDENTIFY_ATTEMPTS = 2


@dataclass(slots=True)
class ScanResult:
    """One scan: what acknowledged, what the kernel owns, and what could not be probed."""

    found: list[int] = field(default_factory=list)
    kernel_owned: list[int] = field(default_factory=list)
    # address -> why its probe failed (an adapter or bus error, not a NAK).
    failed: dict[int, str] = field(default_factory=dict)


async def scan(
    bus: BusOwner,
    *,
    mux_address: int | None = None,
    mux_channel: int | None = None,
    skip: Collection[int] = (),
) -> ScanResult:
    """Probes 0x08-0x77 i2cdetect-style, without the multiplexers and the `skip` addresses.

    Each probe is its own transaction, so sampling goes on between them. No
    error of one address aborts the scan; a bus timeout does (BusTimeout): a
    partial scan would look like vanished chips.
    """
    muxes = bus.known_muxes | ({mux_address} if mux_address is not None else set())
    result = ScanResult()
    for address in SCAN_ADDRESSES:
        if address in muxes or address in skip:
            continue
        device = bus.device(address, mux_address=mux_address, mux_channel=mux_channel)
        try:
            presence = await device.probe()
            if presence is Presence.ABSENT and await _answers_command(bus, device):
                presence = Presence.PRESENT
        except BusTimeout:
            raise
        except BusError as err:
            result.failed[address] = str(err)
            continue
        if presence is Presence.PRESENT:
            result.found.append(address)
        elif presence is Presence.KERNEL_OWNED:
            result.kernel_owned.append(address)
    return result


async def _answers_command(bus: BusOwner, device: I2CDevice) -> bool:
    # An SHT4x NAKs every read until a command has completed, so a receive-byte
    # probe misses it; its read-serial command (harmless) finds it instead.
    if device.address not in sht4x.ADDRESSES or bus.quick_probe(device.address):
        return False
    try:
        await device.write(bytes([sht4x.READ_SERIAL]))
    except BusNak:
        return False
    return True


async def scan_places(bus: BusOwner, places: Iterable[Place]) -> dict[Place, ScanResult]:
    """Scans the main bus and each multiplexer channel in `places` of one bus.

    The main bus is scanned with every multiplexer channel closed; a chip seen
    there answers on every channel too, so channel scans leave its address out.
    """
    wanted = list(dict.fromkeys(places))
    main = await scan(bus)
    results: dict[Place, ScanResult] = {}
    for place in wanted:
        if place is None:
            results[place] = main
            continue
        mux_address, mux_channel = place
        results[place] = await scan(
            bus, mux_address=mux_address, mux_channel=mux_channel, skip=main.found
        )
    return results


@dataclass(frozen=True, slots=True)
class Identification:
    """What answers at one address, or why that is not known."""

    identity: Identity | None
    # Why the chip is unknown (None once identified).
    reason: str | None = None
    # A short code for the reason: "unsupported_chip", "mux_range" or a DriverError/BusError code.
    code: str | None = None
    # Whether asking again later can help.
    retry: bool = False


async def identify_address(device: I2CDevice, *, timing: Timing = DEFAULT_TIMING) -> Identification:
    """Identifies the chip at `device`; never raises for one chip's failure but a bus timeout."""
    if device.address in MUX_ADDRESSES:
        # Any written byte would switch an unconfigured TCA9548A's channels.
        return Identification(
            None,
            "0x70-0x77 is the TCA9548A multiplexer range: nothing is written there; "
            "configure the multiplexer (mux_address) or pin the sensor",
            "mux_range",
        )
    found = Identification(None)
    for _ in range(IDENTIFY_ATTEMPTS):
        found = await _identify_once(device, timing)
        # A busy circuit stays busy for a while: the next scan asks again.
        if found.identity is not None or found.code == "timeout":
            break
    return found


async def _identify_once(device: I2CDevice, timing: Timing) -> Identification:
    try:
        identity = await identify(device, timing=timing)
    except BusTimeout:
        raise
    except (BusError, DriverError) as err:
        _LOGGER.info("could not identify %r: %s", device, err)
        return Identification(None, f"identification failed: {err}", err.code, retry=True)
    _LOGGER.debug("%r identified as %s", device, identity)
    if identity is None:
        return Identification(
            None,
            "answers, but is none of the supported chips "
            "(EZO `i`, SHT4x serial number, ADS1115 registers)",
            "unsupported_chip",
            retry=True,
        )
    return Identification(identity)
