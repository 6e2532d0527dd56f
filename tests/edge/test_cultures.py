"""Simulated cultures: each holds its own temperature, starts at its own pH and grows
at its own pace; `simulate --cultures` refuses a culture it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreactor_edge.cli import main
from bioreactor_edge.simulator.physics import CULTURES, ReactorModel

HOUR_S = 3600.0


def model_after(culture: str, hours: float) -> ReactorModel:
    now = [0.0]
    model = ReactorModel(seed=3, clock=lambda: now[0], culture=CULTURES[culture])
    now[0] = hours * HOUR_S
    model.state()
    return model


@pytest.mark.parametrize(
    ("culture", "temperature_c", "ph"), [("yeast", 30.0, 5.5), ("cho", 37.0, 7.0)]
)
def test_a_culture_holds_its_temperature_and_starts_at_its_ph(
    culture: str, temperature_c: float, ph: float
) -> None:
    start = model_after(culture, 0).state()
    later = model_after(culture, 3).state()
    assert start.ph == pytest.approx(ph, abs=0.02)
    assert later.temperature_c == pytest.approx(temperature_c, abs=0.15)


def test_cultures_grow_at_their_own_pace() -> None:
    ecoli = model_after("ecoli", 2).state().optical_density
    yeast = model_after("yeast", 2).state().optical_density
    cho = model_after("cho", 2).state().optical_density
    assert ecoli > 2.5 * yeast > 0
    assert yeast > cho > 0.05


def test_simulate_refuses_an_unknown_culture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--data-dir", str(tmp_path), "--cultures", "ecoli,bogus"])
    assert exit_info.value.code == 2
    assert "unknown culture bogus (known: ecoli, yeast, cho)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
