"""The real-`hass` harness never lets Home Assistant sit in recovery mode unnoticed:
`HassProcess.start()` fails at once and says why."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.hass_process import HassProcess, HassStartError


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
