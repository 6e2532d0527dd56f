"""The `bioreactor-edge` command, run as a user would: real subprocesses on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bioreactor_edge.cli import main, scan_grid
from bioreactor_edge.discovery import ScanResult
from tests.support.agent_process import free_ports

TOKEN = "t" * 43


def get(url: str, token: str | None = TOKEN) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
        return json.load(resp)


def wait_until(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (OSError, urllib.error.URLError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


@pytest.fixture
def simulated_agents(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_ports(2)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bioreactor_edge",
            "simulate",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--rate",
            "5",
            "--agents",
            "2",
            "--sensors-per-reactor",
            "8",
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port + 1}/api/v1/info", None))
        yield port, tmp_path
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()
        assert b"Traceback" not in out, out.decode()


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "scan", "token", "status", "simulate"):
        assert command in out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("bioreactor-edge")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == __import__("bioreactor_edge").__version__


def test_token_is_created_once_and_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--data-dir", str(tmp_path / "data")]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["token", "--data-dir", str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out.strip() == first
    assert len(first) >= 43  # 256 bits, url-safe base64
    token_files = [p for p in (tmp_path / "data").iterdir() if p.is_file()]
    assert token_files and all(p.stat().st_mode & 0o077 == 0 for p in token_files)


def test_invalid_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[api]\nport = "eighty"\n')
    assert main(["token", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "api" in err and "port" in err


def test_scan_simulated_prints_table_and_identities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--simulated"]) == 0
    out = capsys.readouterr().out
    assert "60: -- 61 62 63 64 -- 66 67 -- --" in out  # the EZO circuits' row of the grid
    for kind in ("ph", "do", "orp", "ec", "rtd", "pmp", "sht4x", "ads1115"):
        assert f" {kind} " in out, kind


def test_scan_with_a_configured_mux_on_a_simulated_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[reactors]]\nid = "main"\n\n'
        '[[reactors]]\nid = "left"\nmux_address = 0x70\nmux_channel = 0\n'
    )
    assert main(["scan", "--config", str(config), "--board", "beaglebone-i2c-omap"]) == 0
    out = capsys.readouterr().out
    main_part, _, left_part = out.partition("left: bus 1 mux 0x70 channel 0")
    assert main_part.startswith("main: bus 1")
    assert "  0x63  ph " in main_part
    # Configured now, the multiplexer is no unknown chip; its empty channel does
    # not list the main bus's chips again (only the kernel-owned EEPROMs show).
    assert "  0x70" not in main_part
    rows = [line.split()[:2] for line in left_part.splitlines() if line.startswith("  0x")]
    assert rows == [["0x54", "UU"], ["0x55", "UU"], ["0x56", "UU"], ["0x57", "UU"]]


def test_scan_grid_is_i2cdetect_style() -> None:
    result = ScanResult(
        found=[0x08, 0x63], kernel_owned=[0x54, 0x55], failed={0x20: "arbitration lost"}
    )
    grid = scan_grid(result)
    assert grid[0] == "      0  1  2  3  4  5  6  7  8  9  a  b  c  d  e  f"
    assert grid[1] == "00:                         08 -- -- -- -- -- -- --"
    assert grid[3] == "20: ?? -- -- -- -- -- -- -- -- -- -- -- -- -- -- --"
    assert grid[6] == "50: -- -- -- -- UU UU -- -- -- -- -- -- -- -- -- --"
    assert grid[7] == "60: -- -- -- 63 -- -- -- -- -- -- -- -- -- -- -- --"
    assert grid[8] == "70: -- -- -- -- -- -- -- --                        "


def test_simulated_agents_serve_before_their_discovery_ends(tmp_path: Path) -> None:
    agents = 4
    port = free_ports(agents)
    # At 0.2 Hz the simulated chips answer as fast as the real ones (never slower:
    # the SHT4x driver waits its datasheet's real delays): identifying a reactor's
    # chips takes seconds.
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "bioreactor_edge", "simulate"),
            *("--data-dir", str(tmp_path), "--port", str(port), "--token", TOKEN),
            *("--rate", "0.2", "--agents", str(agents), "--sensors-per-reactor", "8"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(first) < agents and time.monotonic() < deadline:
            for index in set(range(agents)) - set(first):
                try:
                    first[index] = get(f"http://127.0.0.1:{port + index}/api/v1/status")
                except (OSError, urllib.error.URLError):
                    time.sleep(0.05)
        assert len(first) == agents
        assert {s["discovery"]["state"] for s in first.values()} == {"running"}
        # And discovery does finish, in the background.
        status = wait_until(
            lambda: (s := get(f"http://127.0.0.1:{port}/api/v1/status"))["discovery"]["state"]
            == "idle"
            and s
        )
        assert status["discovery"]["last_scan"] is not None
        kinds = sorted(sensor["kind"] for sensor in status["reactors"][0]["sensors"])
        assert kinds == sorted(("ads1115", "do", "ec", "orp", "ph", "pmp", "rtd", "sht4x"))
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out, out.decode()


def test_simulate_serves_plausible_moving_readings(simulated_agents: tuple[int, Path]) -> None:
    port, data_dir = simulated_agents
    base = f"http://127.0.0.1:{port}/api/v1"
    info = get(f"{base}/info", None)
    other = get(f"http://127.0.0.1:{port + 1}/api/v1/info", None)
    assert info["agent_id"] != other["agent_id"]
    assert (data_dir / "agent-0").is_dir() and (data_dir / "agent-1").is_dir()

    def temperatures() -> list[float]:
        page = get(f"{base}/readings?after=0&limit=10000")
        return [r["value"] for r in page["readings"] if r["quantity"] == "temperature"]

    values = wait_until(lambda: (t := temperatures()) and len(t) >= 10 and t)
    assert all(15.0 < v < 45.0 for v in values), values
    status = get(f"{base}/status")
    sensors = {s["kind"]: s for s in status["reactors"][0]["sensors"]}
    assert {"ph", "do", "orp", "ec", "rtd", "pmp", "sht4x", "ads1115"} <= set(sensors)
    ph = next(q for q in sensors["ph"]["quantities"] if q["key"] == "ph")
    assert 5.0 < ph["value"] < 8.5
    assert status["journal"]["newest_seq"] > 0
    # Readings keep coming: the journal grows while we watch.
    first = status["journal"]["newest_seq"]
    wait_until(lambda: get(f"{base}/status")["journal"]["newest_seq"] > first + 20)


def test_status_once_renders_a_running_agent(
    simulated_agents: tuple[int, Path], tmp_path: Path
) -> None:
    port, data_dir = simulated_agents
    config = tmp_path / "status.toml"
    # The simulated agents serve plain HTTP (no --tls).
    config.write_text(f'data_dir = "{data_dir / "agent-0"}"\n[api]\nport = {port}\ntls = false\n')
    # The simulated agents use --token; status reads the data dir's token file.
    (data_dir / "agent-0" / "token").write_text(TOKEN)
    (data_dir / "agent-0" / "token").chmod(0o600)
    wait_until(lambda: get(f"http://127.0.0.1:{port}/api/v1/status")["reactors"][0]["sensors"])
    result = subprocess.run(
        [sys.executable, "-m", "bioreactor_edge", "status", "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "journal epoch" in result.stdout
    assert "bus1-ph-63" in result.stdout
