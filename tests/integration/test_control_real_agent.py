"""Control from Home Assistant against a REAL agent (`bioreactor-edge simulate --control`)
on loopback: entities follow the agent's loops and actuators, commands move the agent,
and its refusals (named limits) arrive as validation errors while nothing moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.const import DOMAIN
from tests.support.agent_process import AgentProcess, running_agent

from .real_agent import pair

pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    control = ("--control",)
    with running_agent(tmp_path / "agent", rate_hz=5.0, sensors=8, extra_args=control) as process:
        yield process


class Lab:
    """Home Assistant paired with the agent; reads the agent's own control state."""

    def __init__(self, hass: HomeAssistant, agent: AgentProcess, entry: MockConfigEntry) -> None:
        self.hass, self.agent, self.entry = hass, agent, entry
        prefix = "simulated_bench_1_reactor_1"
        self.id = lambda domain, name: f"{domain}.{prefix}_{name}"

    async def reactor(self) -> dict[str, Any]:
        status = await self.hass.async_add_executor_job(self.agent.get, "/api/v1/status")
        reactor: dict[str, Any] = status["reactors"][0]
        return reactor

    async def loop(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(
            x for x in (await self.reactor())["loops"] if x["id"] == f"bus1-{name}"
        )
        return found

    async def actuator(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(
            a for a in (await self.reactor())["actuators"] if a["id"] == f"bus1-{name}"
        )
        return found

    async def call(self, domain: str, service: str, data: dict[str, Any]) -> None:
        await self.hass.services.async_call(domain, service, data, blocking=True)
        await self.hass.async_block_till_done()

    async def until(self, condition: Callable[[], Any], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.2)


async def _dosed(lab: Lab) -> bool:
    return (await lab.actuator("base"))["last_dose_ml"] is not None


@pytest.fixture
async def lab(hass: HomeAssistant, agent: AgentProcess) -> Lab:
    entry, _ = await pair(hass, agent)
    return Lab(hass, agent, entry)


async def test_control_a_real_agent(hass: HomeAssistant, lab: Lab) -> None:
    ph_mode = lab.id("select", "ph_control")
    assert hass.states.get(ph_mode).state == "auto"
    assert hass.states.get(lab.id("select", "temperature_control")).state == "auto"
    setpoint = hass.states.get(lab.id("number", "ph_setpoint"))
    loop = await lab.loop("ph")
    assert (setpoint.attributes["min"], setpoint.attributes["max"]) == (
        loop["setpoint_min"],
        loop["setpoint_max"],
    )

    # Narrowing a limit: the agent keeps the hard one and enforces the narrowed one.
    dose_limit = lab.id("number", "ph_dose_limit")
    await lab.call("number", "set_value", {"entity_id": dose_limit, "value": 1.0})
    loop = await lab.loop("ph")
    assert (loop["limits"]["max_dose_ml"], loop["hard_limits"]["max_dose_ml"]) == (1.0, 2.0)
    assert float(hass.states.get(dose_limit).state) == 1.0
    with pytest.raises(ServiceValidationError, match="outside valid range"):
        await lab.call("number", "set_value", {"entity_id": dose_limit, "value": 2.5})
    assert (await lab.loop("ph"))["limits"]["max_dose_ml"] == 1.0

    # A setpoint inside the hard range reaches the agent; beyond it Home Assistant refuses.
    await lab.call("number", "set_value", {"entity_id": setpoint.entity_id, "value": 7.2})
    assert (await lab.loop("ph"))["setpoint"] == 7.2
    with pytest.raises(ServiceValidationError, match="outside valid range"):
        await lab.call("number", "set_value", {"entity_id": setpoint.entity_id, "value": 7.6})
    assert (await lab.loop("ph"))["setpoint"] == 7.2
    # The culture sits near pH 7: the loop doses base, each dose within the narrowed limit.
    await lab.until(lambda: _dosed(lab))
    assert 0 < (await lab.actuator("base"))["last_dose_ml"] <= 1.0

    # While the pH loop is automatic, the agent refuses a dose by hand, naming why.
    device = dr.async_get(hass).async_get_device_by_identifier(
        (DOMAIN, f"{lab.entry.unique_id}_bus1"), lab.entry.entry_id
    )
    assert device is not None
    with pytest.raises(ServiceValidationError) as refused:
        await lab.call(DOMAIN, "dose", {"device_id": device.id, "volume_ml": 0.5})
    assert refused.value.translation_placeholders["limit"] == "loop_mode"
    assert "set the loop to manual" in str(refused.value)

    await lab.call("select", "select_option", {"entity_id": ph_mode, "option": "manual"})
    assert (await lab.loop("ph"))["mode"] == "manual"
    assert hass.states.get(ph_mode).state == "manual"
    before = await lab.actuator("base")

    # More than the pump's hard cap per dose: refused with the agent's reason, nothing dosed.
    with pytest.raises(ServiceValidationError) as too_much:
        await lab.call(DOMAIN, "dose", {"device_id": device.id, "volume_ml": 3.5})
    assert too_much.value.translation_placeholders["limit"] == "max_dose_ml"
    assert "exceeds max_dose_ml 3.0" in str(too_much.value)
    assert (await lab.actuator("base"))["dosed_last_day_ml"] == before["dosed_last_day_ml"]

    await lab.call(DOMAIN, "dose", {"entity_id": lab.id("button", "prime_base"), "volume_ml": 0.5})
    pump = await lab.actuator("base")
    assert (pump["last_dose_ml"], pump["commanded_by"]) == (0.5, "api")
    dosed = lab.id("sensor", "base_dosed_in_the_last_hour")
    assert float(hass.states.get(dosed).state) == before["dosed_last_hour_ml"] + 0.5

    # A relay no loop drives, switched by hand.
    aeration = lab.id("switch", "aeration_relay")
    await lab.call("switch", "turn_on", {"entity_id": aeration})
    assert (await lab.actuator("aeration"))["applied"] == 1.0
    assert hass.states.get(aeration).state == "on"

    # Emergency stop: every loop off and every actuator in its safe state, on the agent.
    await lab.call("button", "press", {"entity_id": lab.id("button", "emergency_stop")})

    async def all_safe() -> bool:
        reactor = await lab.reactor()
        return all(x["mode"] == "off" for x in reactor["loops"]) and all(
            a["in_safe_state"] for a in reactor["actuators"]
        )

    await lab.until(all_safe)
    await lab.entry.runtime_data.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(ph_mode).state == "off"
    assert hass.states.get(aeration).state == "off"
    assert hass.states.get(lab.id("sensor", "ph_control_state")).state == "off"
    assert await hass.config_entries.async_unload(lab.entry.entry_id)
