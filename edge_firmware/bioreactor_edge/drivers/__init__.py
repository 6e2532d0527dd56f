"""Chip drivers: identification, and a driver class per chip kind."""

from __future__ import annotations

from ..bus import I2CDevice
from . import ads1115, sht4x
from .ads1115 import Ads1115Driver, identify_ads1115
from .base import DEFAULT_TIMING, Driver, Identity, Timing
from .ezo import (
    MODELS as EZO_MODELS,
    DoDriver,
    EcDriver,
    OrpDriver,
    PhDriver,
    PmpDriver,
    RtdDriver,
    identify_ezo,
)
from .sht4x import Sht4xDriver, identify_sht4x

DRIVERS: dict[str, type[Driver]] = {
    driver.kind: driver
    for driver in (
        PhDriver,
        DoDriver,
        OrpDriver,
        EcDriver,
        RtdDriver,
        PmpDriver,
        Sht4xDriver,
        Ads1115Driver,
    )
}
_MODELS = {**EZO_MODELS, "sht4x": "SHT4x", "ads1115": "ADS1115"}


async def identify(device: I2CDevice, *, timing: Timing = DEFAULT_TIMING) -> Identity | None:
    """What answers at `device`: register chips by reading them, EZO circuits by `i`.

    At the register chips' own addresses they are asked first, so an SHT4x or an
    ADS1115 never receives an EZO command (an EZO circuit can be moved to any
    address, so `i` is still tried there). None means the chip answered but is
    none of the supported kinds.
    """
    identity = None
    if device.address in sht4x.ADDRESSES:
        identity = await identify_sht4x(device)
    elif device.address in ads1115.ADDRESSES:
        identity = await identify_ads1115(device)
    return identity or await identify_ezo(device, timing)


def default_identity(kind: str) -> Identity:
    """The identity assumed for an address pinned in configuration as `kind`."""
    if kind not in DRIVERS:
        raise ValueError(f"unknown sensor kind {kind!r} (known: {', '.join(sorted(DRIVERS))})")
    return Identity(kind=kind, model=_MODELS[kind], firmware=None)


def create_driver(
    device: I2CDevice, identity: Identity, *, timing: Timing = DEFAULT_TIMING
) -> Driver:
    """A driver for `identity`'s kind; ValueError for an unknown kind."""
    driver = DRIVERS.get(identity.kind)
    if driver is None:
        raise ValueError(f"no driver for sensor kind {identity.kind!r}")
    return driver(device, identity, timing=timing)


__all__ = ["DRIVERS", "create_driver", "default_identity", "identify"]
