"""Register chips: Sensirion SHT4x, TI ADS1115, TI TCA9548A, from their datasheets."""

from __future__ import annotations

from . import Exchange, Transcript

# SHT4x datasheet, CRC section: CRC-8 (0x31, init 0xFF) of 0xBEEF is 0x92. A
# frame of two 0xBEEF words is therefore the datasheet's own example twice.
BEEF_FRAME = bytes.fromhex("beef92beef92")

TRANSCRIPTS = (
    Transcript(
        name="sht4x-measure",
        chip="sht4x",
        address=0x44,
        state={"words_override": (0xBEEF, 0xBEEF)},
        exchanges=(Exchange(b"\xfd", 0.0083, BEEF_FRAME),),
        source="SHT4x datasheet: command 0xFD (high repeatability, max 8.3 ms) answers "
        "T word, CRC, RH word, CRC; T = -45 + 175 * S/65535, RH = -6 + 125 * S/65535; "
        "CRC example CRC(0xBEEF) = 0x92",
        driver="read",
        expect=[-45 + 175 * 0xBEEF / 65535, -6 + 125 * 0xBEEF / 65535],
    ),
    Transcript(
        name="sht4x-serial",
        chip="sht4x",
        address=0x44,
        state={"serial": 0xBEEFBEEF},
        exchanges=(Exchange(b"\x89", 0.01, BEEF_FRAME),),
        source="SHT4x datasheet: command 0x89 reads the serial number as two CRC-protected "
        "words (Sensirion's driver waits 10 ms)",
        driver="identify",
        expect=("sht4x", None),
    ),
    Transcript(
        name="ads1115-thresholds",
        chip="ads1115",
        address=0x48,
        exchanges=(
            Exchange(b"\x02", 0.0, b"\x80\x00"),
            Exchange(b"\x03", 0.0, b"\x7f\xff"),
        ),
        source="ADS1115 datasheet (SBAS444) register map: Lo_thresh resets to 0x8000, "
        "Hi_thresh to 0x7FFF",
        driver="identify",
        expect=("ads1115", None),
    ),
    Transcript(
        name="ads1115-config-reset",
        chip="ads1115",
        address=0x48,
        exchanges=(Exchange(b"\x01", 0.0, b"\x85\x83"),),
        source="ADS1115 datasheet (SBAS444) Config register: reset value 0x8583",
    ),
    Transcript(
        name="tca9548a-control",
        chip="tca9548a",
        address=0x70,
        exchanges=(Exchange(b"\x01\x04", 0.0, b"\x04"),),
        source="TCA9548A datasheet (SCPS207F) 8.5.4: the control register keeps the last "
        "byte received and reads back",
    ),
)
