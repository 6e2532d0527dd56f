"""Finding chips: scan a bus (or a multiplexer channel) and identify what answers."""

from __future__ import annotations

import logging

from .bus import BusOwner, I2CDevice
from .drivers import identify
from .drivers.base import DEFAULT_TIMING, Identity, Timing

_LOGGER = logging.getLogger(__name__)

# 0x00-0x07 and 0x78-0x7F are reserved by the I2C specification.
SCAN_ADDRESSES: range = range(0x08, 0x78)


async def scan(
    bus: BusOwner, *, mux_address: int | None = None, mux_channel: int | None = None
) -> list[int]:
    """Addresses that acknowledge an i2cdetect-style probe, without the multiplexers.

    Each probe is its own transaction, so sampling goes on between them. A bus
    timeout aborts the scan (BusTimeout): a partial scan would look like vanished chips.
    """
    muxes = bus.known_muxes | ({mux_address} if mux_address is not None else set())
    found = []
    for address in SCAN_ADDRESSES:
        if address in muxes:
            continue
        device = bus.device(address, mux_address=mux_address, mux_channel=mux_channel)
        if await device.probe():
            found.append(address)
    return found


async def identify_address(
    device: I2CDevice, *, timing: Timing = DEFAULT_TIMING
) -> Identity | None:
    """What chip answers at `device`; None when it is not a supported kind."""
    identity = await identify(device, timing=timing)
    _LOGGER.debug("%r identified as %s", device, identity)
    return identity
