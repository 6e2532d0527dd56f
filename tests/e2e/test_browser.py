"""The demo in a real browser (Debian's chromium driven by Playwright): log in, the
Bioreactors dashboard shows live values that change, a reactor's device page, and
an export run from Developer tools > Actions. Screenshots go to the artifacts
directory (printed at the start of the run)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .demo_lab import REPO, DemoLab, HomeAssistantClient

pytestmark = pytest.mark.timeout(900)

CHROMIUM = os.environ.get("BIOREACTOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def template(demo: DemoLab, text: str) -> Any:
    async def render() -> Any:
        async with aiohttp.ClientSession() as session:
            client = HomeAssistantClient(session, demo)
            await client.login()
            try:
                async with session.post(
                    demo.url + "/api/template", json={"template": text}, headers=client.headers
                ) as resp:
                    resp.raise_for_status()
                    return json.loads(await resp.text())
            finally:
                await client.close()

    return asyncio.run(render())


def log_in(page: Page, demo: DemoLab, path: str) -> None:
    page.goto(demo.url + path)
    page.get_by_label("Username").fill(demo.login["username"])
    page.locator("input[type=password]").fill(demo.login["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/auth/" not in url, timeout=60_000)


def dashboard_values(page: Page) -> list[str]:
    """The big values of the view's entity cards (pH, temperature, DO...)."""
    cards = page.locator("hui-entity-card")
    expect(cards.first).to_be_visible(timeout=60_000)
    return [text.strip() for text in page.locator("hui-entity-card .value").all_inner_texts()]


def test_dashboard_device_page_and_export(demo: DemoLab, artifacts: Path) -> None:
    ph_entity = template(
        demo,
        "{{ states.sensor | selectattr('entity_id', 'in', integration_entities('bioreactor'))"
        " | selectattr('attributes.device_class', 'eq', 'ph')"
        " | map(attribute='entity_id') | sort | first | tojson }}",
    )
    device_id = template(demo, f"{{{{ device_id('{ph_entity}') | tojson }}}}")
    device_name = template(demo, f"{{{{ device_attr('{device_id}', 'name') | tojson }}}}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        try:
            log_in(page, demo, "/bioreactor-lab/0")

            first = dashboard_values(page)
            assert len(first) >= 3, first
            assert all(NUMBER.match(value) for value in first), first
            deadline = time.monotonic() + 120
            while (now := dashboard_values(page)) == first:
                assert time.monotonic() < deadline, f"no value changed in 120 s: {first}"
                page.wait_for_timeout(2000)
            assert all(NUMBER.match(value) for value in now), now
            expect(page.locator("hui-history-graph-card").first).to_be_visible()
            page.wait_for_timeout(2000)  # let the history graphs draw
            page.screenshot(path=artifacts / "dashboard.png")
            if os.environ.get("BIOREACTOR_UPDATE_SCREENSHOT"):
                shutil.copy(artifacts / "dashboard.png", REPO / "docs" / "img" / "dashboard.png")

            page.goto(f"{demo.url}/config/devices/device/{device_id}")
            expect(page.get_by_text(device_name).first).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Dissolved oxygen").first).to_be_visible()
            page.screenshot(path=artifacts / "device.png")

            page.goto(f"{demo.url}/developer-tools/action")
            page.get_by_role("button", name=re.compile("YAML mode", re.IGNORECASE)).click()
            editor = page.locator("ha-code-editor .cm-content").first
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            # The editor indents after a colon itself: type flat lines, one key at a time.
            editor.fill(
                "action: bioreactor.export_readings\n"
                "data:\n"
                f"  device_id: {device_id}\n"
                "  start: '2000-01-01 00:00:00'\n"
                "  end: '2100-01-01 00:00:00'\n"
            )
            page.get_by_role("button", name="Perform action").click()
            response = page.locator(".cm-content").filter(has_text="rows:")
            expect(response).to_be_visible(timeout=60_000)
            page.screenshot(path=artifacts / "export.png")
            text = response.inner_text()
            path = Path(re.search(r"path: (\S+)", text).group(1))  # type: ignore[union-attr]
            rows = int(re.search(r"rows: (\d+)", text).group(1))  # type: ignore[union-attr]
        finally:
            browser.close()

    assert rows > 0
    assert path.is_file()
    assert len(path.read_text().splitlines()) == rows + 1  # a header, then one line per reading
