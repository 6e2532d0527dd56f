"""Control loops: PID and pH dosing, alone and closed around the simulator's reactor model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bioreactor_edge.control.dosing import (
    DAY_S,
    HOUR_S,
    Direction,
    Doser,
    DosingLimits,
    DosingSettings,
    Input,
)
from bioreactor_edge.control.pid import Pid, PidGains
from bioreactor_edge.simulator.physics import ReactorModel

HEATER = PidGains(kp=0.5, ki=0.004, kd=0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- PID ---------------------------------------------------------------------


def test_pid_rejects_bad_gains_range_and_steps() -> None:
    with pytest.raises(ValueError, match="kp"):
        PidGains(kp=-1, ki=0)
    with pytest.raises(ValueError, match="ki"):
        PidGains(kp=1, ki=float("nan"))
    with pytest.raises(ValueError, match="empty"):
        Pid(HEATER, output_min=1, output_max=1)
    pid = Pid(HEATER)
    with pytest.raises(ValueError, match="positive time"):
        pid.update(37, 36, 0)
    with pytest.raises(ValueError, match="finite"):
        pid.update(37, float("inf"), 1)


def test_pid_output_is_clamped_and_integral_does_not_wind_up() -> None:
    pid = Pid(HEATER)
    # An hour far below the setpoint saturates the output high...
    for _ in range(3600):
        assert pid.update(37.0, 20.0, 1.0) == 1.0
    # ...without an integral that would keep it saturated once the setpoint is reached.
    assert pid.integral * HEATER.ki <= 1.0
    assert pid.update(37.0, 37.5, 1.0) < 1.0


def test_pid_derivative_acts_on_measurement_not_setpoint() -> None:
    pid = Pid(PidGains(kp=0.0, ki=0.0, kd=10.0), output_min=-100, output_max=100)
    pid.update(30.0, 30.0, 1.0)
    # A setpoint step alone gives no derivative kick.
    assert pid.update(37.0, 30.0, 1.0) == 0.0
    # A falling measurement pushes the output up.
    assert pid.update(37.0, 29.0, 1.0) == pytest.approx(10.0)
    pid.reset()
    assert pid.integral == 0.0
    assert pid.update(37.0, 20.0, 1.0) == 0.0


def test_temperature_loop_holds_37_within_0_3_after_settling() -> None:
    clock = FakeClock()
    model = ReactorModel(seed=3, clock=clock)
    model.heater_power = 0.0
    pid = Pid(HEATER)
    worst = 0.0
    for second in range(6 * 3600):
        clock.now = float(second)
        state = model.state()
        model.heater_power = pid.update(37.0, state.temperature_c, 1.0)
        if second >= 2 * 3600:  # settled
            worst = max(worst, abs(state.temperature_c - 37.0))
    assert worst <= 0.3, f"temperature strayed {worst:.3f} °C from 37.0 after settling"


# -- dosing ------------------------------------------------------------------

LIMITS = DosingLimits(
    max_dose_ml=2.0,
    max_ml_per_hour=10.0,
    max_ml_per_day=60.0,
    min_interval_s=60,
    max_input_age_s=30,
)
SETTINGS = DosingSettings(
    setpoint=7.0,
    deadband=0.05,
    ml_per_unit=20.0,
    expected_change_per_ml=0.02,
    response_fraction=0.25,
    min_judged_change=0.01,
    unresponsive_doses=1,
)


def base_doser(limits: DosingLimits = LIMITS, settings: DosingSettings = SETTINGS) -> Doser:
    return Doser(settings, limits, Direction.RAISES)


def test_dosing_settings_and_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_dose_ml"):
        DosingLimits(0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="min_dose_ml must not exceed"):
        DosingLimits(0.05, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="setpoint"):
        DosingSettings(float("nan"), 0.05, 1, 1)
    with pytest.raises(ValueError, match="response_fraction"):
        DosingSettings(7, 0.05, 1, 1, response_fraction=2)


def test_no_dose_on_missing_failed_or_stale_input() -> None:
    doser = base_doser()
    assert doser.decide(100, None).reason == "lockout:input_error"
    assert doser.decide(100, Input(6.0, 100, good=False)).reason == "lockout:input_error"
    assert doser.decide(100, Input(float("nan"), 100, good=True)).reason == "lockout:input_error"
    stale = doser.decide(100, Input(6.0, 69, good=True))
    assert stale.ml == 0 and stale.locked_out and stale.reason == "lockout:input_stale"
    assert doser.decide(100, Input(6.0, 71, good=True)).ml == 2.0


def test_dose_is_proportional_spaced_and_capped() -> None:
    doser = base_doser()
    assert doser.decide(0, Input(7.0, 0, True)).reason == "in_band"
    assert doser.decide(0, Input(6.96, 0, True)).reason == "in_band"
    small = doser.decide(0, Input(6.94, 0, True))
    assert small.ml == pytest.approx(1.2)  # 20 mL/pH * 0.06
    doser.record_dose(0, small.ml, 6.94)
    assert doser.decide(30, Input(6.5, 30, True)).reason == "awaiting_response"
    # After the interval the dose is judged: it moved pH as expected.
    assert doser.decide(61, Input(6.5, 61, True)).reason == "lockout:no_response"


def test_hourly_and_daily_caps_hold() -> None:
    limits = DosingLimits(
        max_dose_ml=2, max_ml_per_hour=5, max_ml_per_day=8, min_interval_s=60, max_input_age_s=30
    )
    # A culture that keeps moving toward the setpoint never trips the alarm.
    doser = Doser(
        DosingSettings(7.0, 0.05, 20.0, 0.02, min_judged_change=1.0), limits, Direction.RAISES
    )
    total, t = 0.0, 0.0
    while t < 2 * DAY_S:
        decision = doser.decide(t, Input(6.0, t, True))
        if decision.ml:
            doser.record_dose(t, decision.ml, 6.0)
            total += decision.ml
            assert doser.dosed_within(t, HOUR_S) <= 5 + 1e-9
            assert doser.dosed_within(t, DAY_S) <= 8 + 1e-9
        t += 60
    assert total == pytest.approx(16.0)  # two days' worth, never more


def test_acid_pump_lowers_ph() -> None:
    doser = Doser(SETTINGS, LIMITS, Direction.LOWERS)
    assert doser.decide(0, Input(6.5, 0, True)).reason == "in_band"
    assert doser.decide(0, Input(7.2, 0, True)).ml == 2.0


def test_no_response_alarm_locks_out_until_cleared_and_survives_restart() -> None:
    doser = base_doser()
    doser.record_dose(0, 2.0, 6.8)
    # Two mL should move pH by 0.04; it moved 0.005 (pump or line failure).
    assert doser.decide(120, Input(6.805, 120, True)).reason == "lockout:no_response"
    restored = base_doser()
    restored.restore(doser.snapshot())
    assert restored.decide(130, Input(6.8, 130, True)).reason == "lockout:no_response"
    assert restored.dosed_within(130, HOUR_S) == 2.0
    restored.clear_alarm()
    assert restored.decide(130, Input(6.8, 130, True)).ml == 2.0


def test_doses_stamped_in_the_future_still_count() -> None:
    doser = base_doser()
    doser.record_dose(10_000, 2.0, 6.0)
    # The clock jumped back an hour: the dose still counts against the caps.
    assert doser.dosed_within(6_400, HOUR_S) == 2.0


@settings(max_examples=60, deadline=None)
@given(
    max_dose=st.floats(0.2, 5.0),
    per_hour=st.floats(0.5, 20.0),
    per_day=st.floats(1.0, 100.0),
    interval=st.integers(0, 600),
    acid_per_s=st.floats(0.0, 0.0002),
    ph_per_ml=st.floats(0.0, 0.05),
    stale_every=st.integers(5, 50),
)
def test_property_never_exceeds_a_cap_and_never_doses_blind(
    max_dose: float,
    per_hour: float,
    per_day: float,
    interval: int,
    acid_per_s: float,
    ph_per_ml: float,
    stale_every: int,
) -> None:
    limits = DosingLimits(
        max_dose_ml=max_dose,
        max_ml_per_hour=per_hour,
        max_ml_per_day=per_day,
        min_interval_s=interval,
        max_input_age_s=20,
    )
    doser = base_doser(limits)
    ph, last_dose, doses = 7.0, None, []
    reading_time = 0.0
    for step in range(0, 2 * int(DAY_S), 10):
        t = float(step)
        ph -= acid_per_s * 10
        if (step // 10) % stale_every:
            reading_time = t  # otherwise the sensor missed this reading
        decision = doser.decide(t, Input(ph, reading_time, True))
        if decision.ml:
            assert t - reading_time <= 20, "dosed on a stale reading"
            assert decision.ml <= max_dose + 1e-9
            assert last_dose is None or t - last_dose >= interval
            doser.record_dose(t, decision.ml, ph)
            ph += decision.ml * ph_per_ml
            doses.append((t, decision.ml))
            last_dose = t
            assert sum(ml for when, ml in doses if t - when < HOUR_S) <= per_hour + 1e-9
            assert sum(ml for when, ml in doses if t - when < DAY_S) <= per_day + 1e-9


def culture_doser() -> Doser:
    """The pH loop of the simulated culture (ReactorModel): doses of 3 mL at most, 120 s apart."""
    return base_doser(
        DosingLimits(
            max_dose_ml=3.0,
            max_ml_per_hour=30,
            max_ml_per_day=200,
            min_interval_s=120,
            max_input_age_s=30,
        ),
        DosingSettings(setpoint=7.0, deadband=0.03, ml_per_unit=10, expected_change_per_ml=0.02),
    )


def test_ph_loop_holds_setpoint_against_a_growing_culture() -> None:
    clock = FakeClock()
    model = ReactorModel(seed=5, clock=clock)
    doser = culture_doser()
    lowest = highest = 7.0
    for second in range(0, 8 * 3600, 5):
        clock.now = float(second)
        state = model.state()
        decision = doser.decide(clock.now, Input(state.ph, clock.now, True))
        if decision.ml:
            model.dose_base(decision.ml)
            doser.record_dose(clock.now, decision.ml, state.ph)
        lowest, highest = min(lowest, state.ph), max(highest, state.ph)
    assert doser.alarm is None
    assert model.state().base_dosed_ml > 5, "the culture's acid never needed base"
    assert doser.alarm is None
    assert lowest >= 6.9 and highest <= 7.1, f"pH ranged {lowest:.3f}-{highest:.3f}"


def test_alarm_needs_consecutive_unresponsive_doses() -> None:
    settings = DosingSettings(7.0, 0.05, 20.0, 0.02, min_judged_change=0.01, unresponsive_doses=3)
    limits = DosingLimits(
        max_dose_ml=2, max_ml_per_hour=50, max_ml_per_day=50, min_interval_s=60, max_input_age_s=30
    )
    doser = base_doser(limits, settings)
    t = 0.0
    for moved in (0.0, 0.0, 0.04, 0.0, 0.0):  # the third dose worked: the count starts over
        doser.record_dose(t, 2.0, 6.5)
        t += 60
        assert doser.decide(t, Input(6.5 + moved, t, True)).reason == "dose"
    doser.record_dose(t, 2.0, 6.5)
    t += 60
    assert doser.decide(t, Input(6.5, t, True)).reason == "lockout:no_response"


def test_a_pump_that_delivers_nothing_raises_the_alarm_and_dosing_stops() -> None:
    clock = FakeClock()
    model = ReactorModel(seed=7, clock=clock)
    doser = culture_doser()
    commanded = 0.0
    for second in range(0, 8 * 3600, 5):
        clock.now = float(second)
        state = model.state()
        decision = doser.decide(clock.now, Input(state.ph, clock.now, True))
        if decision.ml:  # the line is blocked: nothing reaches the vessel
            doser.record_dose(clock.now, decision.ml, state.ph)
            commanded += decision.ml
    assert doser.alarm == "no_response"
    assert model.state().base_dosed_ml == 0
    # Three judged doses of at most 3 mL, plus the small unjudged ones before them.
    assert commanded < 30


def test_minimum_interval_holds_even_after_a_quick_response() -> None:
    settings = DosingSettings(
        7.0, 0.05, 20.0, 0.02, response_delay_s=0, min_judged_change=0.01, unresponsive_doses=1
    )
    doser = base_doser(settings=settings)
    doser.record_dose(0, 2.0, 6.5)
    assert doser.decide(30, Input(6.6, 30, True)).reason == "min_interval"
    assert doser.alarm is None
    assert doser.decide(60, Input(6.6, 60, True)).ml == 2.0
