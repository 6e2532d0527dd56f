"""The demo's Home Assistant side, without clicking. Runs in the HA venv.

`prepare` (before anything starts): refuses taken ports with a clear message,
starts from scratch on --reset, writes the demo's configuration, pins Home
Assistant's port in its HTTP store, installs the Bioreactors dashboard and the
alert blueprints into the configuration directory.

`setup` (while Home Assistant starts): waits for it, onboards it with a generated
owner password (stored owner-only in the config dir, never a default), pairs every
simulated agent through the real config flow, creates one alert automation per
blueprint and writes `ready.json` into the demo directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
USERNAME = "lab"
START_TIMEOUT_S = 600
AGENT_TIMEOUT_S = 120
# Onboarding adds these; they need the internet, which a lab may not have.
INTERNET_DOMAINS = ("met", "radio_browser", "google_translate")
# Where the demo's alerts go: Home Assistant's notification drawer (no phone here).
DEMO_NOTIFY = "notify.persistent_notification"


def log(message: str) -> None:
    print(f"\033[1m[demo]\033[0m {message}", file=sys.stderr, flush=True)


# -- prepare -------------------------------------------------------------------


def port_taken(port: int) -> bool:
    """Whether something listens there (connections of a stopped demo that linger
    in TIME_WAIT do not count: the servers bind with SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def check_ports(ha_port: int, agent_port: int, agents: int) -> None:
    taken = [p for p in (ha_port, *range(agent_port, agent_port + agents)) if port_taken(p)]
    if taken:
        raise SystemExit(
            f"demo: port(s) {', '.join(map(str, taken))} already in use (another demo or Home "
            "Assistant?). Stop it, or choose other ports: DEMO_HA_PORT=8124 "
            "DEMO_AGENT_PORT=8520 ./scripts/demo"
        )


def pin_http_port(config: Path, port: int) -> None:
    """Home Assistant keeps its port in `.storage/http` after the first start (where the
    SETUP_PORT environment variable sets it); later starts must follow DEMO_HA_PORT too."""
    store = config / ".storage" / "http"
    if not store.exists():
        return
    content = json.loads(store.read_text())
    content["data"]["stable"]["server_port"] = port
    content["data"]["pending"] = None
    store.write_text(json.dumps(content, indent=2))


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    link_path.symlink_to(target)


def reset(demo_dir: Path, config: Path, lab: Path) -> None:
    """Forgets Home Assistant's and the agents' data; nothing else in DEMO_DIR."""
    log(f"--reset: removing the demo's Home Assistant configuration and agent data in {demo_dir}")
    for directory in (config, lab):
        shutil.rmtree(directory, ignore_errors=True)
    for leftover in (*demo_dir.glob("*.log"), demo_dir / "ready.json"):
        leftover.unlink(missing_ok=True)


def prepare(args: argparse.Namespace) -> None:
    # Before anything is deleted: a --reset must not wipe a running demo's data.
    check_ports(args.ha_port, args.agent_port, args.agents)
    config: Path = args.config
    if args.reset:
        reset(args.demo_dir, config, args.lab)
    (args.demo_dir / "ready.json").unlink(missing_ok=True)
    args.lab.mkdir(parents=True, exist_ok=True)
    config.mkdir(parents=True, exist_ok=True)
    # The demo's configuration.yaml is the repository's, rewritten at every start.
    shutil.copy(REPO / "scripts" / "lib" / "demo_configuration.yaml", config / "configuration.yaml")
    for name, empty in (("automations.yaml", "[]"), ("scenes.yaml", "[]"), ("scripts.yaml", "{}")):
        if not (config / name).exists():
            (config / name).write_text(empty + "\n")
    pin_http_port(config, args.ha_port)
    link(REPO / "custom_components" / "bioreactor", config / "custom_components" / "bioreactor")
    link(REPO / "dashboards" / "bioreactors.yaml", config / "dashboards" / "bioreactors.yaml")
    # File by file: Home Assistant's blueprint listing does not descend into a
    # symlinked directory.
    blueprints = config / "blueprints" / "automation" / "bioreactor"
    if blueprints.is_symlink():
        blueprints.unlink()
    for blueprint in sorted((REPO / "blueprints" / "automation" / "bioreactor").glob("*.yaml")):
        link(blueprint, blueprints / blueprint.name)


# -- setup ---------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class HomeAssistant:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.client_id = f"{url}/"
        self.headers: dict[str, str] = {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, self.url + path, json=body, headers=self.headers
        ) as resp:
            if resp.status >= 400:
                raise SystemExit(f"{method} {path}: HTTP {resp.status} {await resp.text()}")
            return await resp.json()

    async def wait_started(self, hass_pid: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while loop.time() < deadline:
            if not alive(hass_pid):
                raise SystemExit("Home Assistant exited during start-up; see its log")
            try:
                # 200 while onboarding is open, 404 once it is done.
                async with self.session.get(f"{self.url}/api/onboarding") as resp:
                    if resp.status in (200, 404):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1)
        raise SystemExit(f"Home Assistant did not answer within {START_TIMEOUT_S} s")

    async def wait_running(self) -> None:
        """RUNNING and not in recovery mode (which would load no custom integration)."""
        while True:
            config = await self.call("GET", "/api/config")
            if config["recovery_mode"] or config["safe_mode"]:
                raise SystemExit("Home Assistant started in recovery mode; see home-assistant.log")
            if config["state"] == "RUNNING":
                return
            await asyncio.sleep(1)

    async def exchange_code(self, code: str) -> None:
        async with self.session.post(
            f"{self.url}/auth/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": self.client_id},
        ) as resp:
            resp.raise_for_status()
            self.headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}

    async def onboard_or_login(self, login_file: Path) -> None:
        """Onboards on first start; logs in with the stored password afterwards."""
        async with self.session.get(f"{self.url}/api/onboarding") as resp:
            open_steps = (
                {s["step"] for s in await resp.json() if not s["done"]}
                if resp.status == 200
                else set()
            )
        if "user" in open_steps:
            password = secrets.token_urlsafe(12)
            code = (
                await self.call(
                    "POST",
                    "/api/onboarding/users",
                    {
                        "client_id": self.client_id,
                        "name": "Lab",
                        "username": USERNAME,
                        "password": password,
                        "language": "en",
                    },
                )
            )["auth_code"]
            login_file.touch(mode=0o600)
            login_file.write_text(json.dumps({"username": USERNAME, "password": password}))
            await self.exchange_code(code)
            for step, body in (
                ("core_config", {}),
                ("analytics", {}),
                (
                    "integration",
                    {
                        "client_id": self.client_id,
                        "redirect_uri": f"{self.client_id}?auth_callback=1",
                    },
                ),
            ):
                await self.call("POST", f"/api/onboarding/{step}", body)
            await self.remove_internet_entries()
            return
        login = json.loads(login_file.read_text())
        flow = await self.call(
            "POST",
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{self.client_id}?auth_callback=1",
            },
        )
        result = await self.call(
            "POST", f"/auth/login_flow/{flow['flow_id']}", {"client_id": self.client_id, **login}
        )
        await self.exchange_code(result["result"])

    async def remove_internet_entries(self) -> None:
        """They appear shortly after the onboarding steps, so look a few times."""
        for _ in range(5):
            for entry in await self.call("GET", "/api/config/config_entries/entry"):
                if entry["domain"] in INTERNET_DOMAINS:
                    await self.call(
                        "DELETE", f"/api/config/config_entries/entry/{entry['entry_id']}"
                    )
            await asyncio.sleep(1)

    async def template(self, template: str) -> Any:
        async with self.session.post(
            f"{self.url}/api/template", json={"template": template}, headers=self.headers
        ) as resp:
            resp.raise_for_status()
            return json.loads(await resp.text())


async def wait_for_agent(session: aiohttp.ClientSession, port: int, lab_pid: int) -> None:
    for _ in range(AGENT_TIMEOUT_S):
        if not alive(lab_pid):
            raise SystemExit("the simulated lab exited; see lab.log")
        try:
            async with session.get(f"http://127.0.0.1:{port}/api/v1/info") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(1)
    raise SystemExit(f"the simulated agent on port {port} did not start; see lab.log")


async def pair_agents(ha: HomeAssistant, lab: Path, port: int, agents: int, lab_pid: int) -> None:
    """Through the same config flow a user walks through in the UI."""
    configured = {
        entry["title"]
        for entry in await ha.call("GET", "/api/config/config_entries/entry?domain=bioreactor")
    }
    for index in range(agents):
        await wait_for_agent(ha.session, port + index, lab_pid)
        async with ha.session.get(f"http://127.0.0.1:{port + index}/api/v1/info") as resp:
            name = (await resp.json())["name"]
        if name in configured:
            continue
        agent_token = (lab / f"agent-{index}" / "token").read_text().strip()
        flow = await ha.call(
            "POST",
            "/api/config/config_entries/flow",
            {"handler": "bioreactor", "show_advanced_options": False},
        )
        for _ in range(AGENT_TIMEOUT_S // 2):
            result = await ha.call(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"host": "127.0.0.1", "port": port + index, "token": agent_token},
            )
            # An agent answers /info before its first status is ready: the form again.
            if result.get("errors") != {"base": "cannot_connect"}:
                break
            await asyncio.sleep(2)
        if result.get("reason") == "already_configured":
            continue  # paired before under another name
        if result.get("type") != "create_entry":
            raise SystemExit(f"pairing the agent on port {port + index} failed: {result}")
        log(f"paired {result['title']} (port {port + index})")


# Entities of the integration picked by what they are, not by their names.
ENTITY_QUERIES = {
    "ph": "selectattr('attributes.device_class', 'eq', 'ph')",
    "connectivity": "selectattr('attributes.device_class', 'eq', 'connectivity')",
    "status": "selectattr('attributes.options', 'defined')"
    " | selectattr('attributes.options', 'contains', 'error')",
    "dropped": "selectattr('entity_id', 'search', 'dropped')",
}


async def bioreactor_entities(ha: HomeAssistant, what: str) -> list[str]:
    return list(
        await ha.template(
            "{{ states | selectattr('entity_id', 'in', integration_entities('bioreactor')) | "
            f"{ENTITY_QUERIES[what]} | map(attribute='entity_id') | list | tojson }}}}"
        )
    )


def demo_automations(entities: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """One automation per blueprint, alerting to the notification drawer."""

    def use(blueprint: str, **inputs: Any) -> dict[str, Any]:
        return {
            "path": f"bioreactor/{blueprint}.yaml",
            "input": {"notify_action": DEMO_NOTIFY, **inputs},
        }

    return {
        "bioreactor_demo_ph_out_of_range": {
            "alias": "Bioreactor: pH out of range",
            "use_blueprint": use(
                "value_out_of_range",
                reading=entities["ph"],
                minimum=4.5,
                maximum=7.6,
                duration={"minutes": 5},
            ),
        },
        "bioreactor_demo_agent_offline": {
            "alias": "Bioreactor: agent offline",
            "use_blueprint": use("agent_offline", connectivity=entities["connectivity"]),
        },
        "bioreactor_demo_sensor_error": {
            "alias": "Bioreactor: sensor in error",
            "use_blueprint": use("sensor_error", status=entities["status"]),
        },
        "bioreactor_demo_readings_dropped": {
            "alias": "Bioreactor: readings dropped",
            "use_blueprint": use("readings_dropped", dropped=entities["dropped"]),
        },
    }


async def create_automations(ha: HomeAssistant) -> None:
    entities: dict[str, list[str]] = {}
    for _ in range(60):  # entities appear once each agent's first status has arrived
        entities = {what: await bioreactor_entities(ha, what) for what in ENTITY_QUERIES}
        if all(entities.values()):
            break
        await asyncio.sleep(1)
    for automation_id, config in demo_automations(entities).items():
        await ha.call("POST", f"/api/config/automation/config/{automation_id}", config)
    log(f"alert automations from the {len(ENTITY_QUERIES)} blueprints created")


async def setup(args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session:
        ha = HomeAssistant(session, args.url)
        await ha.wait_started(args.hass_pid)
        await ha.onboard_or_login(args.config / ".demo-login")
        await ha.wait_running()
        await pair_agents(ha, args.lab, args.agent_port, args.agents, args.lab_pid)
        await create_automations(ha)
    (args.demo_dir / "ready.json").write_text(
        json.dumps({"url": args.url, "login_file": str(args.config / ".demo-login")})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare")
    prep.add_argument("--demo-dir", type=Path, required=True)
    prep.add_argument("--config", type=Path, required=True)
    prep.add_argument("--lab", type=Path, required=True)
    prep.add_argument("--reset", action="store_true")
    prep.add_argument("--ha-port", type=int, required=True)
    prep.add_argument("--agent-port", type=int, required=True)
    prep.add_argument("--agents", type=int, required=True)
    run = commands.add_parser("setup")
    run.add_argument("--url", required=True)
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--demo-dir", type=Path, required=True)
    run.add_argument("--lab", type=Path, required=True)
    run.add_argument("--agent-port", type=int, required=True)
    run.add_argument("--agents", type=int, required=True)
    run.add_argument("--hass-pid", type=int, required=True)
    run.add_argument("--lab-pid", type=int, required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
    else:
        asyncio.run(setup(args))


if __name__ == "__main__":
    main()
