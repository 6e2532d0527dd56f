"""Models of the Linux I2C adapters the agent runs on, with their quirks.

Each adapter is described by what its kernel driver reports and refuses, so the
same simulated chips can sit behind a BeagleBone's or a Raspberry Pi's controller.
"""

from __future__ import annotations

from dataclasses import dataclass

from smbus2 import I2cFunc

# Linux include/uapi/linux/i2c.h: I2C_FUNC_SMBUS_EMUL, what i2c-core can emulate
# with plain I2C messages on any adapter that has I2C_FUNC_I2C.
SMBUS_EMUL = (
    I2cFunc.SMBUS_QUICK
    | I2cFunc.SMBUS_READ_BYTE
    | I2cFunc.SMBUS_WRITE_BYTE
    | I2cFunc.SMBUS_READ_BYTE_DATA
    | I2cFunc.SMBUS_WRITE_BYTE_DATA
    | I2cFunc.SMBUS_READ_WORD_DATA
    | I2cFunc.SMBUS_WRITE_WORD_DATA
    | I2cFunc.SMBUS_PROC_CALL
    | I2cFunc.SMBUS_WRITE_BLOCK_DATA
    | I2cFunc.SMBUS_READ_I2C_BLOCK
    | I2cFunc.SMBUS_WRITE_I2C_BLOCK
    | I2cFunc.SMBUS_PEC
)


@dataclass(frozen=True, slots=True)
class Adapter:
    """One I2C controller as its Linux driver presents it.

    Glitch rates are probabilities drawn from the bus's seeded generator, so a
    run with the same seed glitches at the same transactions.
    """

    name: str
    funcs: int  # what SMBus.funcs reports (I2C_FUNC_* bits)
    zero_length_messages: bool = True  # False: 0-byte messages fail with EOPNOTSUPP
    # Per payload byte read from a clock-stretching chip: arrives with bit 7 set.
    top_bit_rate: float = 0.0
    # Per read from a clock-stretching chip: the transfer fails as not acknowledged.
    stretch_nak_rate: float = 0.0

    def __post_init__(self) -> None:
        for field, rate in (
            ("top_bit_rate", self.top_bit_rate),
            ("stretch_nak_rate", self.stretch_nak_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{field} must be within 0-1, got {rate}")

    @property
    def quick(self) -> bool:
        """Whether SMBus quick commands (i2cdetect's default probe) work."""
        return bool(self.funcs & I2cFunc.SMBUS_QUICK) and self.zero_length_messages


# A well-behaved controller: everything i2c-core can emulate, no glitches.
GENERIC = Adapter(name="generic", funcs=int(I2cFunc.I2C | SMBUS_EMUL))

# BeagleBone Black, i2c-omap (drivers/i2c/busses/i2c-omap.c): omap_i2c_func()
# returns I2C_FUNC_I2C | (I2C_FUNC_SMBUS_EMUL & ~I2C_FUNC_SMBUS_QUICK) |
# I2C_FUNC_PROTOCOL_MANGLING, and its quirks set I2C_AQ_NO_ZERO_LEN, so i2c-core
# refuses quick commands and zero-length messages with EOPNOTSUPP.
BEAGLEBONE = Adapter(
    name="beaglebone-i2c-omap",
    funcs=int(I2cFunc.I2C | (SMBUS_EMUL & ~I2cFunc.SMBUS_QUICK) | I2cFunc.PROTOCOL_MANGLING),
    zero_length_messages=False,
)

# Raspberry Pi, i2c-bcm2835 (drivers/i2c/busses/i2c-bcm2835.c): full SMBus
# emulation, but quirk I2C_AQ_NO_CLK_STRETCH - the controller mishandles a slave
# that stretches the clock. Bytes then arrive with bit 7 set (Atlas Scientific's
# Raspberry Pi sample code masks every reply character with & 0x7F for this) or
# the transfer fails. Chips that never stretch the clock are not affected.
RASPBERRY_PI = Adapter(
    name="raspberry-pi-i2c-bcm2835",
    funcs=int(I2cFunc.I2C | SMBUS_EMUL | I2cFunc.PROTOCOL_MANGLING),
    top_bit_rate=0.02,
    stretch_nak_rate=0.01,
)

ADAPTERS = {adapter.name: adapter for adapter in (GENERIC, BEAGLEBONE, RASPBERRY_PI)}
