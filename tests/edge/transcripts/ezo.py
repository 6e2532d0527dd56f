"""Atlas Scientific EZO circuits in I2C mode, from their datasheets.

"Response codes" (every datasheet): 1 success, 2 syntax error, 254 still
processing, 255 no data to send; a reply is the code, ASCII, then NUL.
"""

from __future__ import annotations

from . import Exchange, Transcript, ezo_ok

KINDS = frozenset({"ph", "do", "orp", "ec", "rtd", "pmp"})

TRANSCRIPTS = (
    # Identification: "Device information" page of each datasheet, `i` -> ?I,<type>,<firmware>.
    Transcript(
        name="ph-i",
        chip="ph",
        address=0x63,
        firmware="1.98",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,pH,1.98")),),
        source="EZO-pH datasheet, I2C 'Device information': i -> ?I,pH,1.98 (300 ms)",
        driver="identify",
        expect=("ph", "1.98"),
    ),
    Transcript(
        name="do-i",
        chip="do",
        address=0x61,
        firmware="1.0",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,D.O.,1.0")),),
        source="EZO-DO datasheet, I2C 'Device information': i -> ?I,D.O.,1.0 (300 ms)",
        driver="identify",
        expect=("do", "1.0"),
    ),
    Transcript(
        name="do-i-firmware-1.7",
        chip="do",
        address=0x61,
        firmware="1.7",
        state={"type_name": "DO"},
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,DO,1.7")),),
        source="EZO-DO in the field: firmware 1.7 spells its type DO (public drivers note "
        "both ?I,D.O.,1.0 and ?I,DO,1.7)",
        driver="identify",
        expect=("do", "1.7"),
    ),
    Transcript(
        name="orp-i",
        chip="orp",
        address=0x62,
        firmware="1.0",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,ORP,1.0")),),
        source="EZO-ORP datasheet, I2C 'Device information': i -> ?I,ORP,1.0 (300 ms)",
        driver="identify",
        expect=("orp", "1.0"),
    ),
    Transcript(
        name="ec-i",
        chip="ec",
        address=0x64,
        firmware="1.0",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,EC,1.0")),),
        source="EZO-EC datasheet, I2C 'Device information': i -> ?I,EC,1.0 (300 ms)",
        driver="identify",
        expect=("ec", "1.0"),
    ),
    Transcript(
        name="rtd-i",
        chip="rtd",
        address=0x66,
        firmware="2.01",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,RTD,2.01")),),
        source="EZO-RTD datasheet, I2C 'Device information': i -> ?I,RTD,2.01 (300 ms)",
        driver="identify",
        expect=("rtd", "2.01"),
    ),
    Transcript(
        name="pmp-i",
        chip="pmp",
        address=0x67,
        firmware="1.0",
        exchanges=(Exchange(b"i", 0.3, ezo_ok("?I,PMP,1.0")),),
        source="EZO-PMP datasheet, I2C 'Device information': i -> ?I,PMP,1.0 (300 ms)",
        driver="identify",
        expect=("pmp", "1.0"),
    ),
    # Readings.
    Transcript(
        name="ph-r",
        chip="ph",
        address=0x63,
        exchanges=(Exchange(b"R", 0.9, ezo_ok("9.560"), measured=True),),
        source="EZO-pH datasheet V5.x p.51, I2C 'Taking reading': R -> 1 9.560 0, 900 ms",
        driver="read",
        expect=[9.56],
    ),
    Transcript(
        name="rtd-r",
        chip="rtd",
        address=0x66,
        exchanges=(Exchange(b"R", 0.6, ezo_ok("25.104"), measured=True),),
        source="EZO-RTD datasheet, I2C 'Taking reading': R -> 25.104, 600 ms",
        driver="read",
        expect=[25.104],
    ),
    Transcript(
        name="rtd-no-probe",
        chip="rtd",
        address=0x66,
        state={"probe_connected": False},
        exchanges=(Exchange(b"R", 0.6, ezo_ok("-1023.000")),),
        source="EZO-RTD datasheet: with no probe connected the reading is -1023.000",
        driver="read",
        expect="no_probe",
    ),
    # Outputs: "Enable/disable parameters" pages (note the comma after `?`).
    Transcript(
        name="do-outputs-both",
        chip="do",
        address=0x61,
        state={"outputs": {"mg", "%"}},
        exchanges=(Exchange(b"O,?", 0.3, ezo_ok("?,O,%,mg")),),
        source="EZO-DO datasheet V4.1 p.55, I2C 'Enable/disable parameters': O,? -> "
        "?,O,%,mg if both are enabled, 300 ms",
        driver="setup",
        expect=["dissolved_oxygen", "oxygen_saturation"],
    ),
    Transcript(
        name="do-output-enable",
        chip="do",
        address=0x61,
        exchanges=(Exchange(b"O,%,1", 0.3, b"\x01\x00"),),
        source="EZO-DO datasheet V4.1 p.55: O,%,1 -> 1 0 (enable percent saturation), 300 ms",
    ),
    Transcript(
        name="ec-outputs-all",
        chip="ec",
        address=0x64,
        firmware="2.09",
        exchanges=(Exchange(b"O,?", 0.3, ezo_ok("?,O,EC,TDS,S,SG")),),
        source="EZO-EC datasheet, I2C 'Enable/disable parameters': O,? -> ?,O,EC,TDS,S,SG "
        "when all are enabled (the default before firmware 2.10)",
        driver="setup",
        expect=["conductivity", "total_dissolved_solids", "salinity", "specific_gravity"],
    ),
    Transcript(
        name="ec-outputs-firmware-2.10",
        chip="ec",
        address=0x64,
        firmware="2.10",
        exchanges=(Exchange(b"O,?", 0.3, ezo_ok("?,O,EC")),),
        source="EZO-EC datasheet V6.2 cover: 'By default, EZO Conductivity circuits with "
        "firmware version 2.10 and above will only output EC'",
        driver="setup",
        expect=["conductivity"],
    ),
    # Settings and status.
    Transcript(
        name="rtd-scale",
        chip="rtd",
        address=0x66,
        exchanges=(Exchange(b"S,?", 0.3, ezo_ok("?S,c")),),
        source="EZO-RTD datasheet, I2C 'Temperature scale': S,? -> ?S,c, 300 ms",
        driver="setup",
        expect=["temperature"],
    ),
    Transcript(
        name="ph-status",
        chip="ph",
        address=0x63,
        exchanges=(Exchange(b"Status", 0.3, ezo_ok("?Status,P,5.038")),),
        source="EZO-pH datasheet, I2C 'Reading device status': Status -> ?Status,P,5.038",
    ),
    Transcript(
        name="ph-slope",
        chip="ph",
        address=0x63,
        state={"calibration": ["mid", "low", "high"]},
        exchanges=(Exchange(b"Slope,?", 0.3, ezo_ok("?Slope,99.7,100.3,-0.89")),),
        source="EZO-pH datasheet, I2C 'Slope': Slope,? -> ?Slope,99.7,100.3,-0.89",
    ),
    Transcript(
        name="ph-temperature",
        chip="ph",
        address=0x63,
        exchanges=(
            Exchange(b"T,19.5", 0.3, b"\x01\x00"),
            Exchange(b"T,?", 0.3, ezo_ok("?T,19.5")),
        ),
        source="EZO-pH datasheet, I2C 'Temperature compensation': T,19.5 -> 1; T,? -> ?T,19.5",
    ),
    Transcript(
        name="syntax-error-then-no-data",
        chip="orp",
        address=0x62,
        exchanges=(Exchange(b"X,1", 0.3, b"\x02"), Exchange(b"L,1", 0.3, b"\x01\x00")),
        source="EZO-ORP datasheet, I2C 'Response codes': 2 = syntax error; LED control L,1 -> 1",
    ),
    # The pump.
    Transcript(
        name="pmp-max-rate",
        chip="pmp",
        address=0x67,
        state={"max_rate_ml_min": 58.5},
        exchanges=(Exchange(b"DC,?", 0.3, ezo_ok("?maxrate,58.5")),),
        source="EZO-PMP datasheet V1.3 p.55, I2C 'Constant flow rate': DC,? reports the "
        "maximum possible flow rate ?maxrate,58.5, 300 ms",
    ),
    Transcript(
        name="pmp-total-volume",
        chip="pmp",
        address=0x67,
        state={"total_volume_ml": 12.5},
        exchanges=(Exchange(b"TV,?", 0.3, ezo_ok("?TV,12.50")),),
        source="EZO-PMP datasheet, I2C 'Total volume dispensed': TV,? -> ?TV,<ml>, 300 ms",
        driver="read",
        expect=[12.5],
    ),
    Transcript(
        name="pmp-dispensing",
        chip="pmp",
        address=0x67,
        exchanges=(
            Exchange(b"D,5", 0.3, b"\x01\x00"),
            Exchange(b"D,?", 0.3, ezo_ok("?D,5.00,1")),
        ),
        source="EZO-PMP datasheet, I2C 'Volume dispensing': D,5 dispenses 5 ml; D,? -> "
        "?D,<ml>,<1 dispensing | 0>, 300 ms (ESPHome's ezo_pmp, datasheet p.54)",
    ),
    # Calibration: the I2C "Calibration" pages; a point answers a bare success.
    Transcript(
        name="ph-calibration-three-points",
        chip="ph",
        address=0x63,
        exchanges=(
            Exchange(b"Cal,mid,7.00", 0.9, b"\x01\x00"),
            Exchange(b"Cal,low,4.00", 0.9, b"\x01\x00"),
            Exchange(b"Cal,high,10.00", 0.9, b"\x01\x00"),
            Exchange(b"Cal,?", 0.3, ezo_ok("?CAL,3")),
            Exchange(b"Slope,?", 0.3, ezo_ok("?Slope,99.7,100.3,-0.89")),
            Exchange(b"Cal,mid,7.00", 0.9, b"\x01\x00"),
            Exchange(b"Cal,?", 0.3, ezo_ok("?CAL,1")),
        ),
        source="EZO-pH datasheet V5.x p.52, I2C 'Calibration': Cal,mid|low|high,n 900 ms, "
        "Cal,? -> ?CAL,0-3 300 ms, cal,mid clears the other points; p.55 'Slope': "
        "Slope,? -> ?Slope,99.7,100.3,-0.89",
    ),
    Transcript(
        name="do-calibration-atmospheric-zero",
        chip="do",
        address=0x61,
        exchanges=(
            Exchange(b"Cal", 1.3, b"\x01\x00"),
            Exchange(b"Cal,0", 1.3, b"\x01\x00"),
            Exchange(b"Cal,?", 0.3, ezo_ok("?CAL,2")),
        ),
        source="EZO-DO datasheet V5.x p.52, I2C 'Calibration': Cal (atmospheric oxygen) and "
        "Cal,0 (zero dissolved oxygen) 1.3 s, Cal,? -> ?CAL,0-2 300 ms",
    ),
    Transcript(
        name="ec-calibration-dry-low-high",
        chip="ec",
        address=0x64,
        exchanges=(
            Exchange(b"Cal,dry", 0.6, b"\x01\x00"),
            Exchange(b"Cal,?", 0.3, ezo_ok("?CAL,0")),
            Exchange(b"Cal,low,12880", 0.6, b"\x01\x00"),
            Exchange(b"Cal,high,80000", 0.6, b"\x01\x00"),
            Exchange(b"Cal,?", 0.3, ezo_ok("?CAL,2")),
        ),
        source="EZO-EC datasheet V6.2, I2C 'Calibration': Cal,dry first, then Cal,low,n and "
        "Cal,high,n (600 ms), Cal,? -> ?CAL,0-2 (a 1 or 2 point calibration) 300 ms",
    ),
)
