"""Each alert blueprint, loaded by the demo into a real Home Assistant, triggers: an
automation made from it notifies `notify.persistent_notification` (observable, unlike
a phone) with an actionable "Acknowledge", and pressing it (the mobile app's
`mobile_app_notification_action` event) fires `bioreactor_alert_acknowledged`.
Driven by setting the states of stand-in entities."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from .demo_lab import DemoLab, HomeAssistantClient

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
async def client(demo: DemoLab) -> AsyncIterator[HomeAssistantClient]:
    async with aiohttp.ClientSession() as session:
        client = HomeAssistantClient(session, demo)
        await client.login()
        await client.ws("subscribe_events", event_type="call_service")
        await client.ws("subscribe_events", event_type="bioreactor_alert_acknowledged")
        try:
            yield client
        finally:
            await client.close()


async def set_state(client: HomeAssistantClient, entity_id: str, state: str) -> None:
    name = entity_id.split(".")[1].replace("_", " ")
    await client.rest(
        "POST", f"/api/states/{entity_id}", {"state": state, "attributes": {"friendly_name": name}}
    )


async def automation_from(
    client: HomeAssistantClient, blueprint: str, inputs: dict[str, Any]
) -> str:
    """Creates (or replaces) an automation from one of the demo's blueprints."""
    automation_id = f"e2e_{blueprint}"
    await client.rest(
        "POST",
        f"/api/config/automation/config/{automation_id}",
        {
            "alias": f"e2e {blueprint}",
            "use_blueprint": {
                "path": f"bioreactor/{blueprint}.yaml",
                "input": {"notify_action": "notify.persistent_notification", **inputs},
            },
        },
    )
    entity_id = f"automation.e2e_{blueprint}"
    async with asyncio.timeout(30):  # the automation integration reloads after the write
        while True:
            state = await client.rest("GET", "/api/states")
            if any(s["entity_id"] == entity_id and s["state"] == "on" for s in state):
                return entity_id
            await asyncio.sleep(0.2)


async def notified_and_acknowledged(
    client: HomeAssistantClient, title_part: str, entity_id: str
) -> dict[str, Any]:
    """Waits for the notification, presses its Acknowledge, waits for the ack event."""
    call = await client.wait_event(
        lambda e: e["data"]["domain"] == "notify"
        and e["data"]["service"] == "persistent_notification"
        and title_part in e["data"]["service_data"].get("title", ""),
        30,
        f"a notification titled '...{title_part}...'",
    )
    data = call["data"]["service_data"]
    (button,) = data["data"]["actions"]
    assert button["title"] == "Acknowledge"
    notifications = await client.ws("persistent_notification/get")
    assert any(title_part in (n.get("title") or "") for n in notifications)
    await client.rest(
        "POST", "/api/events/mobile_app_notification_action", {"action": button["action"]}
    )
    await client.wait_event(
        lambda e: e["event_type"] == "bioreactor_alert_acknowledged"
        and e["data"]["entity_id"] == entity_id,
        30,
        f"the acknowledgement of {entity_id}",
    )
    return dict(data)


async def test_value_out_of_range(client: HomeAssistantClient) -> None:
    await set_state(client, "sensor.e2e_reactor_ph", "7.0")
    await automation_from(
        client,
        "value_out_of_range",
        {
            "reading": ["sensor.e2e_reactor_ph"],
            "minimum": 6.8,
            "maximum": 7.2,
            "duration": {"seconds": 2},
            "repeat_minutes": 1,
        },
    )
    await set_state(client, "sensor.e2e_reactor_ph", "7.6")
    data = await notified_and_acknowledged(client, "out of range", "sensor.e2e_reactor_ph")
    assert "7.6" in data["message"]
    assert "6.8 - 7.2" in data["message"]


async def test_value_briefly_out_of_range_does_not_notify(client: HomeAssistantClient) -> None:
    await set_state(client, "sensor.e2e_brief_ph", "7.0")
    await automation_from(
        client,
        "value_out_of_range",
        {
            "reading": ["sensor.e2e_brief_ph"],
            "minimum": 6.8,
            "maximum": 7.2,
            "duration": {"seconds": 10},
        },
    )
    await set_state(client, "sensor.e2e_brief_ph", "6.1")
    await asyncio.sleep(1)
    await set_state(client, "sensor.e2e_brief_ph", "7.0")
    await asyncio.sleep(11)
    assert not [
        e
        for e in client.events
        if e["data"].get("domain") == "notify"
        and "e2e brief ph" in e["data"]["service_data"].get("title", "")
    ]


async def test_agent_offline(client: HomeAssistantClient) -> None:
    await set_state(client, "binary_sensor.e2e_agent_connectivity", "on")
    await automation_from(
        client,
        "agent_offline",
        {"connectivity": ["binary_sensor.e2e_agent_connectivity"], "duration": {"seconds": 2}},
    )
    await set_state(client, "binary_sensor.e2e_agent_connectivity", "off")
    data = await notified_and_acknowledged(
        client, "offline", "binary_sensor.e2e_agent_connectivity"
    )
    assert "has not answered since" in data["message"]


async def test_sensor_error(client: HomeAssistantClient) -> None:
    await set_state(client, "sensor.e2e_ph_sensor_status", "online")
    await automation_from(
        client,
        "sensor_error",
        {"status": ["sensor.e2e_ph_sensor_status"], "duration": {"seconds": 2}},
    )
    await set_state(client, "sensor.e2e_ph_sensor_status", "error")
    await notified_and_acknowledged(client, ": error", "sensor.e2e_ph_sensor_status")


async def test_readings_dropped(client: HomeAssistantClient) -> None:
    await set_state(client, "sensor.e2e_agent_dropped_readings", "0")
    await automation_from(
        client, "readings_dropped", {"dropped": ["sensor.e2e_agent_dropped_readings"]}
    )
    await set_state(client, "sensor.e2e_agent_dropped_readings", "25")
    data = await notified_and_acknowledged(
        client, "dropped readings", "sensor.e2e_agent_dropped_readings"
    )
    assert data["message"].startswith("25 readings dropped (25 in total)")


async def test_demo_loaded_every_blueprint(client: HomeAssistantClient) -> None:
    blueprints = await client.ws("blueprint/list", domain="automation")
    ours = {path for path in blueprints if path.startswith("bioreactor/")}
    assert ours == {
        "bioreactor/value_out_of_range.yaml",
        "bioreactor/agent_offline.yaml",
        "bioreactor/sensor_error.yaml",
        "bioreactor/readings_dropped.yaml",
    }
    assert all("error" not in blueprints[path] for path in ours), blueprints
    states = await client.rest("GET", "/api/states")
    demo_automations = {
        s["entity_id"]: s["state"]
        for s in states
        if s["entity_id"].startswith("automation.bioreactor_")
    }
    assert len(demo_automations) == 4
    assert set(demo_automations.values()) == {"on"}
