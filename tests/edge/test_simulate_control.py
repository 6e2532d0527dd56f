"""`bioreactor-edge simulate --control`: the simulated reactor's outputs and loops
(served over HTTP, Home Assistant drives them in tests/integration/test_control_real_agent.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreactor_edge.cli import main
from bioreactor_edge.simulator.control_wiring import ACTUATORS, loops_for
from bioreactor_edge.simulator.physics import CULTURES


def test_control_needs_the_standard_sets_pump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--data-dir", str(tmp_path), "--control", "--sensors-per-reactor", "5"]
    assert main(argv) == 2
    assert "--sensors-per-reactor 6 or more" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing was started or written"


@pytest.mark.parametrize("culture", sorted(CULTURES))
def test_loops_drive_configured_outputs_and_hold_the_culture(culture: str) -> None:
    kinds = {a.name: a.kind for a in ACTUATORS}
    wanted = {"heater": "pwm", "heater_enable": "relay", "base_pump": "pump"}
    loops = {loop.kind: loop for loop in loops_for(CULTURES[culture])}
    for loop in loops.values():
        for key, kind in wanted.items():
            name = getattr(loop, key)
            if name:
                assert kinds[name] == kind, (loop.name, key)
        assert loop.setpoint_min <= loop.setpoint <= loop.setpoint_max
    assert loops["temperature"].setpoint == CULTURES[culture].temperature_c
    assert loops["ph"].setpoint == CULTURES[culture].ph
