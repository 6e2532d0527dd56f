"""`./scripts/demo` as a test fixture: the whole demo stack on free ports in a
temporary directory, and an authenticated REST + websocket client for it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.agent_process import free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
AGENTS = 3
START_TIMEOUT_S = 420


@dataclass
class DemoLab:
    directory: Path
    ha_port: int = field(default_factory=free_port)
    agent_port: int = field(default_factory=lambda: free_ports(AGENTS))
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ha_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "demo.log"

    @property
    def login(self) -> dict[str, str]:
        login: dict[str, str] = json.loads(
            (self.directory / "homeassistant" / ".demo-login").read_text()
        )
        return login

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DEMO_DIR": str(self.directory),
            "DEMO_HA_PORT": str(self.ha_port),
            "DEMO_AGENT_PORT": str(self.agent_port),
            "DEMO_AGENTS": str(AGENTS),
        }
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(REPO / "scripts" / "demo")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self.directory / "ready.json").exists():
            if self._proc.poll() is not None:
                raise AssertionError(f"./scripts/demo exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo was not ready in time: {self.log_tail()}")
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM: the demo script stops Home Assistant and the agents itself."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class HomeAssistantClient:
    """REST and websocket calls as the demo's owner."""

    def __init__(self, session: aiohttp.ClientSession, lab: DemoLab) -> None:
        self.session = session
        self.lab = lab
        self.headers: dict[str, str] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    async def login(self) -> None:
        client_id = self.lab.url + "/"
        flow = await self.rest(
            "POST",
            "/auth/login_flow",
            {
                "client_id": client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": f"{client_id}?auth_callback=1",
            },
        )
        result = await self.rest(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": client_id, **self.lab.login},
        )
        async with self.session.post(
            self.lab.url + "/auth/token",
            data={
                "grant_type": "authorization_code",
                "code": result["result"],
                "client_id": client_id,
            },
        ) as resp:
            resp.raise_for_status()
            token = (await resp.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}
        self._ws = await self.session.ws_connect(self.lab.url + "/api/websocket")
        assert (await self._ws.receive_json())["type"] == "auth_required"
        await self._ws.send_json({"type": "auth", "access_token": token})
        assert (await self._ws.receive_json())["type"] == "auth_ok"

    async def rest(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, self.lab.url + path, json=body, headers=self.headers
        ) as resp:
            assert resp.status < 400, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json()

    async def ws(self, message_type: str, **fields: Any) -> Any:
        """One command; events that arrive meanwhile are kept for `wait_event`."""
        assert self._ws is not None, "login first"
        self._next_id += 1
        await self._ws.send_json({"id": self._next_id, "type": message_type, **fields})
        while True:
            message = await self._ws.receive_json()
            if message["type"] == "event":
                self.events.append(message["event"])
            elif message.get("id") == self._next_id:
                assert message["success"], message
                return message["result"]

    async def wait_event(
        self, matches: Callable[[dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        """The first subscribed event (kept or arriving) that `matches`."""
        assert self._ws is not None, "login first"
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    for event in self.events:
                        if matches(event):
                            return event
                    message = await self._ws.receive_json()
                    if message["type"] == "event":
                        self.events.append(message["event"])
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
