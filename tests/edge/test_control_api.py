"""The control routes of the HTTP API on a real agent with simulated actuators: limits
are enforced by the agent (a refusal names the limit and nothing moves)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bioreactor_edge.agent import Agent
from bioreactor_edge.api import API_PREFIX, create_app
from tests.edge.test_control_loops import Lab, lab_config, wait_for

TOKEN = "C" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Lab, Agent, TestClient[Any, Any]]]:
    lab = Lab()
    agent = lab.agent(tmp_path, lab_config(tmp_path))
    await agent.start()
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(agent, TOKEN)))
    await client.start_server()
    try:
        yield lab, agent, client
    finally:
        await client.close()
        await agent.stop()


async def refusal(response: Any, status: int, limit: str | None) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = await response.json()
    assert body.get("limit") == limit
    assert body["message"]
    return body


async def test_control_state_needs_the_token(
    running: tuple[Lab, Agent, TestClient[Any, Any]],
) -> None:
    _, _, client = running
    assert (await client.get(f"{API_PREFIX}/control")).status == 401
    response = await client.get(f"{API_PREFIX}/control", headers=AUTH)
    assert response.status == 200
    (reactor,) = (await response.json())["reactors"]
    assert reactor["id"] == "bus1"
    assert {a["id"] for a in reactor["actuators"]} >= {"bus1-heater", "bus1-base"}
    assert {loop["id"]: loop["mode"] for loop in reactor["loops"]} == {
        "bus1-temperature": "auto",
        "bus1-ph": "auto",
    }
    status = await (await client.get(f"{API_PREFIX}/status", headers=AUTH)).json()
    assert status["reactors"][0]["loops"][0]["id"] == "bus1-temperature"
    assert (await client.patch(f"{API_PREFIX}/loops/bus1-ph", json={"mode": "off"})).status == 401


async def test_loop_settings_outside_hard_limits_are_refused_naming_the_limit(
    running: tuple[Lab, Agent, TestClient[Any, Any]],
) -> None:
    _, agent, client = running
    url = f"{API_PREFIX}/loops/bus1-ph"
    body = await refusal(
        await client.patch(url, json={"setpoint": 8.2}, headers=AUTH), 400, "setpoint_max"
    )
    assert body["error"] == "out_of_limits"
    await refusal(
        await client.patch(
            url, json={"setpoint": 7.1, "limits": {"max_ml_per_day": 500}}, headers=AUTH
        ),
        400,
        "max_ml_per_day",
    )
    await refusal(await client.patch(url, json={"speed": 1}, headers=AUTH), 400, None)
    await refusal(await client.patch(url, json=[1], headers=AUTH), 400, None)
    await refusal(
        await client.patch(f"{API_PREFIX}/loops/bus1-do", json={"mode": "off"}, headers=AUTH),
        404,
        None,
    )
    assert agent.control is not None
    assert agent.control.loop("bus1-ph").settings.setpoint == 7.0, "nothing changed"
    response = await client.patch(
        url, json={"setpoint": 7.1, "limits": {"max_ml_per_day": 50}}, headers=AUTH
    )
    assert response.status == 200
    loop = await response.json()
    assert (loop["setpoint"], loop["limits"]["max_ml_per_day"]) == (7.1, 50)
    assert loop["hard_limits"]["max_ml_per_day"] == 200


async def test_manual_outputs_and_doses_within_limits(
    running: tuple[Lab, Agent, TestClient[Any, Any]],
) -> None:
    lab, _, client = running
    heater = f"{API_PREFIX}/actuators/bus1-heater"
    await refusal(await client.post(heater, json={"value": 0.1}, headers=AUTH), 409, "loop_mode")
    stirrer = f"{API_PREFIX}/actuators/bus1-stirrer"
    await refusal(await client.post(stirrer, json={"value": 0.95}, headers=AUTH), 400, "max_duty")
    await refusal(await client.post(stirrer, json={"value": "fast"}, headers=AUTH), 400, None)
    relay = f"{API_PREFIX}/actuators/bus1-stirrer_relay"
    await refusal(await client.post(relay, json={"value": 0.5}, headers=AUTH), 400, "value")
    response = await client.post(stirrer, json={"value": 0.6}, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["applied"] == 0.6
    assert lab.model.stir_rpm == pytest.approx(600, abs=1)

    dose = f"{API_PREFIX}/actuators/bus1-base/dose"
    await refusal(await client.post(dose, json={"volume_ml": 1}, headers=AUTH), 409, "loop_mode")
    await client.patch(f"{API_PREFIX}/loops/bus1-ph", json={"mode": "manual"}, headers=AUTH)
    await refusal(
        await client.post(dose, json={"volume_ml": 3.5}, headers=AUTH), 400, "max_dose_ml"
    )
    assert not any(c.startswith("D,3") for c in lab.pump.commands)
    response = await client.post(dose, json={"volume_ml": 1.5}, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["dosed_last_hour_ml"] == 1.5
    assert "D,1.5" in lab.pump.commands
    await refusal(
        await client.post(
            f"{API_PREFIX}/actuators/bus1-heater/dose", json={"volume_ml": 1}, headers=AUTH
        ),
        409,
        "kind",
    )


async def test_emergency_stop(running: tuple[Lab, Agent, TestClient[Any, Any]]) -> None:
    lab, _, client = running
    await wait_for(lambda: lab.actuation.relay(0))
    response = await client.post(f"{API_PREFIX}/reactors/bus1/emergency_stop", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert all(a["in_safe_state"] for a in body["actuators"])
    assert {loop["mode"] for loop in body["loops"]} == {"off"}
    assert lab.model.heater_power == 0.0
    missing = await client.post(f"{API_PREFIX}/reactors/r9/emergency_stop", headers=AUTH)
    assert missing.status == 404
