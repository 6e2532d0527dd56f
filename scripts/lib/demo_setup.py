"""Brings a fresh demo Home Assistant to a usable state without clicking.

Waits for Home Assistant, onboards it with a generated owner password (stored
owner-only in the config dir, never a default), then adds a config entry for
every simulated edge agent that has none yet. Runs in the HA venv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import aiohttp

USERNAME = "lab"
START_TIMEOUT_S = 900
INTERNET_DOMAINS = (
    "met",
    "radio_browser",
    "google_translate",
)  # the first start installs the frontend package


def log(message: str) -> None:
    print(f"\033[1m[demo]\033[0m {message}", file=sys.stderr, flush=True)


async def wait_for_ha(session: aiohttp.ClientSession, url: str, hass_pid: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        try:
            os.kill(hass_pid, 0)
        except ProcessLookupError:
            raise SystemExit("Home Assistant exited during start-up; see the log") from None
        try:
            # 200 while onboarding is open, 404 once it is done.
            async with session.get(f"{url}/api/onboarding") as resp:
                if resp.status in (200, 404):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(2)
    raise SystemExit(f"Home Assistant did not answer within {START_TIMEOUT_S} s")


async def exchange_code(session: aiohttp.ClientSession, url: str, code: str) -> str:
    async with session.post(
        f"{url}/auth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": f"{url}/"},
    ) as resp:
        resp.raise_for_status()
        return str((await resp.json())["access_token"])


async def onboard(session: aiohttp.ClientSession, url: str, login_file: Path) -> str:
    """Onboards on first start; logs in with the stored password afterwards."""
    client_id = f"{url}/"
    async with session.get(f"{url}/api/onboarding") as resp:
        steps = {s["step"]: s["done"] for s in await resp.json()} if resp.status == 200 else {}
    if resp.status == 200 and not steps.get("user"):
        password = secrets.token_urlsafe(12)
        async with session.post(
            f"{url}/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "Lab",
                "username": USERNAME,
                "password": password,
                "language": "en",
            },
        ) as resp:
            resp.raise_for_status()
            code = (await resp.json())["auth_code"]
        login_file.touch(mode=0o600)
        login_file.write_text(json.dumps({"username": USERNAME, "password": password}))
        token = await exchange_code(session, url, code)
        headers = {"Authorization": f"Bearer {token}"}
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            (
                "integration",
                {"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"},
            ),
        ):
            async with session.post(f"{url}/api/onboarding/{step}", json=body, headers=headers):
                pass
        await remove_internet_entries(session, url, headers)
        return token
    login = json.loads(login_file.read_text())
    async with session.post(
        f"{url}/auth/login_flow",
        json={
            "client_id": client_id,
            "handler": ["homeassistant", None],
            "redirect_uri": f"{client_id}?auth_callback=1",
        },
    ) as resp:
        flow_id = (await resp.json())["flow_id"]
    async with session.post(
        f"{url}/auth/login_flow/{flow_id}",
        json={"client_id": client_id, **login},
    ) as resp:
        result = await resp.json()
    return await exchange_code(session, url, result["result"])


async def remove_internet_entries(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> None:
    """Onboarding adds entries that need the internet (a lab may have none); they appear
    shortly after the onboarding steps, so look for them a few times."""
    for _ in range(10):
        async with session.get(f"{url}/api/config/config_entries/entry", headers=headers) as resp:
            entries = await resp.json()
        for entry in entries:
            if entry["domain"] in INTERNET_DOMAINS:
                async with session.delete(
                    f"{url}/api/config/config_entries/entry/{entry['entry_id']}", headers=headers
                ):
                    pass
        await asyncio.sleep(1)


async def wait_for_agent(session: aiohttp.ClientSession, port: int) -> None:
    """Simulated agents identify their chips before they serve; wait for each."""
    for _ in range(120):
        try:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/info") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1)
    log(f"the agent on port {port} did not start; see lab.log")


async def add_agents(
    session: aiohttp.ClientSession, url: str, token: str, lab: Path, port: int, agents: int
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(
        f"{url}/api/config/config_entries/entry", params={"domain": "bioreactor"}, headers=headers
    ) as resp:
        existing = await resp.json() if resp.status == 200 else []
    configured = len(existing)
    for index in range(configured, agents):
        await wait_for_agent(session, port + index)
        agent_token = (lab / f"agent-{index}" / "token").read_text().strip()
        async with session.post(
            f"{url}/api/config/config_entries/flow",
            json={"handler": "bioreactor", "show_advanced_options": False},
            headers=headers,
        ) as resp:
            flow: dict[str, Any] = await resp.json()
        async with session.post(
            f"{url}/api/config/config_entries/flow/{flow['flow_id']}",
            json={"host": "127.0.0.1", "port": port + index, "token": agent_token},
            headers=headers,
        ) as resp:
            result = await resp.json()
        outcome = result.get("title") or result.get("errors") or result.get("reason")
        log(f"agent {index} on port {port + index}: {result.get('type')} {outcome}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--agent-port", type=int, required=True)
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--hass-pid", type=int, required=True)
    args = parser.parse_args()
    async with aiohttp.ClientSession() as session:
        await wait_for_ha(session, args.url, args.hass_pid)
        token = await onboard(session, args.url, args.config / ".demo-login")
        if args.agents:
            await add_agents(session, args.url, token, args.lab, args.agent_port, args.agents)
    login = json.loads((args.config / ".demo-login").read_text())
    log(f"log in as {login['username']!r}; the password is in {args.config / '.demo-login'}")


if __name__ == "__main__":
    asyncio.run(main())
