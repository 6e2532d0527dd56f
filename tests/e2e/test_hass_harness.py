"""The real-`hass` harness never lets Home Assistant sit in recovery mode unnoticed:
`HassProcess.start()` fails at once and says why."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.hass_process import REPO, HassProcess, HassStartError


def test_recovery_mode_fails_fast_and_names_why(tmp_path: Path) -> None:
    hass = HassProcess(tmp_path / "homeassistant")
    hass.configure(agent_id="0123456789abcdef", name="Bench", port=1, token="t" * 43)
    # configuration.yaml that does not parse: Home Assistant starts in recovery mode.
    (hass.config_dir / "configuration.yaml").write_text("homeassistant: [unclosed\n")
    started = time.monotonic()
    with pytest.raises(HassStartError, match="recovery mode") as failure:
        hass.start(timeout_s=240)
    assert time.monotonic() - started < 120
    assert "configuration.yaml" in str(failure.value)
    assert hass.port != 8123


def test_the_venv_holds_what_home_assistant_would_install_at_start() -> None:
    """The toolchain provisioned every runtime requirement: `--skip-pip` misses nothing."""
    listed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "lib" / "ha_requirements.py"),
            "--configuration",
            str(REPO / "scripts" / "lib" / "demo_configuration.yaml"),
            "--configuration",
            str(REPO / "tests" / "support" / "hass_configuration.yaml"),
            "--custom-integration",
            str(REPO / "custom_components" / "bioreactor"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {Requirement(line).name.lower() for line in listed}
    # The frontend (a missing one means recovery mode) and what it pulls in.
    assert {"home-assistant-frontend", "pymicro-vad", "pyspeex-noise", "sqlalchemy"} <= names
    missing = [
        line
        for line in listed
        if not Requirement(line).specifier.contains(version(Requirement(line).name))
    ]
    assert not missing, f"not installed in the HA venv at the listed version: {missing}"
