"""The configuration file: valid files parse, invalid ones name the key path."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bioreactor_edge.config import (
    DEFAULT_DATA_DIR,
    AgentConfig,
    ApiConfig,
    ConfigError,
    DiscoveryConfig,
    JournalConfig,
    PinnedSensor,
    ReactorConfig,
    SamplingConfig,
    default_config,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]

FULL = """
name = "Bench B"
data_dir = "/srv/edge"

[api]
host = "127.0.0.1"
port = 9000
tls = false

[journal]
retention_days = 7.5
budget_mb = 64

[discovery]
scan = false
interval_s = 120

[sampling]
interval_s = 2

[[reactors]]
id = "r1"
name = "Reactor one"
bus = 3

[[reactors.sensors]]
address = 0x63
kind = "ph"
interval_s = 1.5

[[reactors.sensors]]
address = 0x61
kind = "do"

[[reactors]]
id = "r2"
bus = 3
mux_address = 0x71
mux_channel = 7
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == AgentConfig(
        name="Bench B",
        data_dir=Path("/srv/edge"),
        api=ApiConfig(host="127.0.0.1", port=9000, tls=False),
        journal=JournalConfig(retention_days=7.5, budget_mb=64),
        discovery=DiscoveryConfig(scan=False, interval_s=120),
        sampling=SamplingConfig(interval_s=2),
        reactors=(
            ReactorConfig(
                id="r1",
                name="Reactor one",
                bus=3,
                sensors=(PinnedSensor(0x63, "ph", 1.5), PinnedSensor(0x61, "do", None)),
            ),
            ReactorConfig(id="r2", name="Reactor r2", bus=3, mux_address=0x71, mux_channel=7),
        ),
    )


def test_example_config_in_docs(tmp_path: Path) -> None:
    config = load_config(REPO / "docs" / "example-config.toml")
    assert config.name == "Bench A"
    assert config.data_dir == Path("/var/lib/bioreactor-edge")
    assert config.api == ApiConfig("0.0.0.0", 8420, tls=True)  # HTTPS unless configured off
    assert [r.id for r in config.reactors] == ["r1", "r2"]
    assert config.reactors[0].sensors == (PinnedSensor(0x63, "ph", 5),)
    assert (config.reactors[1].mux_address, config.reactors[1].mux_channel) == (0x70, 1)


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.name == socket.gethostname()
    assert config.data_dir == DEFAULT_DATA_DIR
    assert config.api == ApiConfig("0.0.0.0", 8420, tls=True)  # HTTPS unless configured off
    assert config.journal == JournalConfig(30, 1024)
    assert config.discovery == DiscoveryConfig(True, 60)
    assert config.sampling == SamplingConfig(5.0)
    assert config.reactors == (ReactorConfig(id="bus1", name="Reactor 1", bus=1),)


def test_default_config_uses_data_dir(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.data_dir == tmp_path
    assert config.reactors[0].id == "bus1"


def test_reactor_defaults() -> None:
    config = parse_config({"reactors": [{"id": "x"}]})
    assert config.reactors == (ReactorConfig(id="x", name="Reactor x", bus=1),)
    assert config.reactors[0].area is None


def test_reactor_area_is_the_room_it_stands_in() -> None:
    config = parse_config({"reactors": [{"id": "x", "area": "  Lab 2.14 "}]})
    assert config.reactors[0].area == "Lab 2.14"


def test_partial_sections_keep_other_defaults() -> None:
    config = parse_config({"api": {"port": 1}, "journal": {"budget_mb": 2}})
    assert config.api == ApiConfig("0.0.0.0", 1)
    assert config.journal == JournalConfig(30, 2)


def test_bool_not_number_for_i2c() -> None:
    with pytest.raises(ConfigError, match=r"reactors\[0\]\.sensors\[0\]\.address"):
        parse_config({"reactors": [{"id": "a", "sensors": [{"address": True, "kind": "ph"}]}]})


SENSOR_OK = 'address = 0x63\nkind = "ph"\n'

INVALID = [
    # (toml text, expected key path in the message)
    ('nmae = "x"', "nmae"),
    ('name = ""', "name"),
    ("name = 3", "name"),
    ('name = "' + "n" * 65 + '"', "name"),
    ("data_dir = 5", "data_dir"),
    ('data_dir = ""', "data_dir"),
    ('[api]\nport = "8420"', "api.port"),
    ("[api]\nport = 0", "api.port"),
    ("[api]\nport = 65536", "api.port"),
    ("[api]\nport = 80.5", "api.port"),
    ("[api]\nhost = 1", "api.host"),
    ("[api]\ntls = 1", "api.tls"),
    ("[api]\ntls = 'no'", "api.tls"),
    ("[api]\nhots = 'x'", "api.hots"),
    ("api = 3", "api"),
    ("[journal]\nretention_days = -1", "journal.retention_days"),
    ("[journal]\nretention_days = 'long'", "journal.retention_days"),
    ("[journal]\nbudget_mb = 0", "journal.budget_mb"),
    ("[journal]\nbudget_mb = 1.5", "journal.budget_mb"),
    ("[journal]\nextra = 1", "journal.extra"),
    ("[discovery]\nscan = 'yes'", "discovery.scan"),
    ("[discovery]\ninterval_s = 0", "discovery.interval_s"),
    ("[sampling]\ninterval_s = 0.01", "sampling.interval_s"),
    ("[sampling]\nrate = 1", "sampling.rate"),
    ("reactors = 5", "reactors"),
    ("[[reactors]]\nname = 'no id'", "reactors[0].id"),
    ("[[reactors]]\nid = 'R1'", "reactors[0].id"),
    ("[[reactors]]\nid = '-r'", "reactors[0].id"),
    ("[[reactors]]\nid = 7", "reactors[0].id"),
    ("[[reactors]]\nid = 'r1'\nbus = 256", "reactors[0].bus"),
    ("[[reactors]]\nid = 'r1'\nbus = -1", "reactors[0].bus"),
    ("[[reactors]]\nid = 'r1'\ncolour = 'red'", "reactors[0].colour"),
    ("[[reactors]]\nid = 'r1'\nmux_address = 0x69\nmux_channel = 0", "reactors[0].mux_address"),
    ("[[reactors]]\nid = 'r1'\nmux_address = 0x70\nmux_channel = 8", "reactors[0].mux_channel"),
    ("[[reactors]]\nid = 'r1'\nmux_address = 0x70", "reactors[0]"),
    ("[[reactors]]\nid = 'r1'\nmux_channel = 2", "reactors[0]"),
    ("[[reactors]]\nid = 'a'\n[[reactors]]\nid = 'b'\nname = ''", "reactors[1].name"),
    ("[[reactors]]\nid = 'r1'\narea = '   '", "reactors[0].area"),
    ("[[reactors]]\nid = 'r1'\narea = 3", "reactors[0].area"),
    ("[[reactors]]\nid = 'a'\n[[reactors]]\nid = 'a'\nbus = 2", "reactors[1].id"),
    ("[[reactors]]\nid = 'a'\n[[reactors]]\nid = 'b'", "reactors[1]"),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "[[reactors.sensors]]\n"
        "address = 0x78\nkind = 'ph'",
        "reactors[0].sensors[1].address",
    ),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "[[reactors.sensors]]\n"
        "address = 0x07\nkind = 'ph'",
        "reactors[0].sensors[1].address",
    ),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "[[reactors.sensors]]\n"
        "address = '0x63'\nkind = 'ph'",
        "reactors[0].sensors[1].address",
    ),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n"
        + SENSOR_OK
        + "[[reactors.sensors]]\n"
        + SENSOR_OK,
        "reactors[0].sensors[1].address",
    ),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\naddress = 0x63\nkind = 'co2'",
        "reactors[0].sensors[0].kind",
    ),
    ("[[reactors]]\nid = 'a'\n[[reactors.sensors]]\nkind = 'ph'", "reactors[0].sensors[0].address"),
    ("[[reactors]]\nid = 'a'\n[[reactors.sensors]]\naddress = 0x63", "reactors[0].sensors[0].kind"),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "interval_s = 0",
        "reactors[0].sensors[0].interval_s",
    ),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "pinned = true",
        "reactors[0].sensors[0].pinned",
    ),
    (
        "[[reactors]]\nid = 'a'\nmux_address = 0x70\nmux_channel = 0\n[[reactors.sensors]]\n"
        "address = 0x70\nkind = 'ph'",
        "reactors[0].sensors[0].address",
    ),
]


@pytest.mark.parametrize(("text", "key"), INVALID, ids=[case[1] for case in INVALID])
def test_invalid_names_key_path(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(key + ":"), message
    assert len(message) > len(key) + 2


def test_bad_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "name = \n[[[")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_duplicate_toml_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "name = 'a'\nname = 'b'\n"))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


BOOLEAN_AS_NUMBER = [
    ("[api]\nport = true", "api.port"),
    ("[journal]\nbudget_mb = true", "journal.budget_mb"),
    ("[journal]\nretention_days = true", "journal.retention_days"),
    ("[discovery]\ninterval_s = true", "discovery.interval_s"),
    ("[sampling]\ninterval_s = true", "sampling.interval_s"),
    ("[[reactors]]\nid = 'a'\nbus = false", "reactors[0].bus"),
    ("[[reactors]]\nid = 'a'\nmux_address = 0x70\nmux_channel = true", "reactors[0].mux_channel"),
    (
        "[[reactors]]\nid = 'a'\n[[reactors.sensors]]\n" + SENSOR_OK + "interval_s = true",
        "reactors[0].sensors[0].interval_s",
    ),
]


@pytest.mark.parametrize(
    ("text", "key"), BOOLEAN_AS_NUMBER, ids=[case[1] for case in BOOLEAN_AS_NUMBER]
)
def test_boolean_is_not_a_number(tmp_path: Path, text: str, key: str) -> None:
    """`port = true` is a wrong type, as `address = true` already is (bool is an int in Python)."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(key + ":")
