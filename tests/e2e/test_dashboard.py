"""The Bioreactors dashboard as the demo installs it: Home Assistant serves it in YAML
mode, and every entity it shows exists in the demo lab (names drift otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
from homeassistant.util.yaml import load_yaml

from .demo_lab import REPO, DemoLab, HomeAssistantClient

DASHBOARD = REPO / "dashboards" / "bioreactors.yaml"


def entity_ids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "entity":
                yield value
            else:
                yield from entity_ids(value)
    elif isinstance(node, list):
        for item in node:
            yield from entity_ids(item)


async def test_dashboard_is_served_and_its_entities_exist(demo: DemoLab) -> None:
    async with aiohttp.ClientSession() as session:
        client = HomeAssistantClient(session, demo)
        await client.login()
        try:
            served = await client.ws("lovelace/config", url_path="bioreactor-lab")
            states = {s["entity_id"] for s in await client.rest("GET", "/api/states")}
        finally:
            await client.close()
    config = load_yaml(DASHBOARD)
    assert isinstance(config, dict)
    assert served == config
    assert [view["path"] for view in config["views"]] == ["ecoli", "yeast", "cho"]
    wanted = set(entity_ids(config))
    assert len(wanted) == 3 * 25
    assert not wanted - states, f"the dashboard shows entities the demo lacks: {wanted - states}"
