"""A real Home Assistant process with this integration, for end-to-end tests.

The configuration (hass_configuration.yaml) holds an explicit list of integrations
(recorder on SQLite) and a pre-made config entry for one edge agent, so no UI flow
is needed. Home Assistant listens on a free port (the `SETUP_PORT` default of its
HTTP store), so tests pass while a demo runs on 8123. `start()` returns only once
Home Assistant is RUNNING, not in recovery or safe mode, with the bioreactor entry
loaded; otherwise it fails at once and says why. Runs on the HA venv's python.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from homeassistant.config_entries import STORAGE_VERSION, STORAGE_VERSION_MINOR, ConfigEntry

from tests.support import process_group
from tests.support.agent_process import free_port

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = Path(__file__).with_name("hass_configuration.yaml")
# Lines Home Assistant logs when it gives up on the configuration.
RECOVERY_LINE = re.compile(r".*(recovery mode|safe mode).*", re.IGNORECASE)
FAILED_ENTRY_STATES = {"setup_error", "migration_error", "failed_unload"}
USERNAME = "harness"


class HassStartError(AssertionError):
    """Home Assistant did not come up as a test needs it; the message says why."""


@dataclass
class HassProcess:
    config_dir: Path
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    _token: str | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config_dir / "hass-stdout.log"

    def configure(self, *, agent_id: str, name: str, port: int, token: str) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.read_text())
        components = self.config_dir / "custom_components"
        components.mkdir(exist_ok=True)
        link = components / "bioreactor"
        if not link.exists():
            link.symlink_to(REPO / "custom_components" / "bioreactor")
        entry = ConfigEntry(
            data={"host": "127.0.0.1", "port": port, "token": token},
            discovery_keys=MappingProxyType({}),
            domain="bioreactor",
            minor_version=1,
            options={},
            source="user",
            subentries_data=None,
            title=name,
            unique_id=agent_id,
            version=1,
        )
        storage = self.config_dir / ".storage"
        storage.mkdir(exist_ok=True)
        (storage / "core.config_entries").write_text(
            json.dumps(
                {
                    "version": STORAGE_VERSION,
                    "minor_version": STORAGE_VERSION_MINOR,
                    "key": "core.config_entries",
                    "data": {"entries": [entry.as_dict()]},
                },
                default=str,
            )
        )

    def start(self, timeout_s: float = 300) -> None:
        """Starts `hass` and waits until it is ready (see `wait_ready`)."""
        assert self._proc is None
        # The first start stores this port in Home Assistant's HTTP store; later
        # starts of the same config dir keep it.
        env = {**os.environ, "SETUP_PORT": str(self.port)}
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._proc = process_group.spawn(
            [sys.executable, "-m", "homeassistant", "-c", str(self.config_dir), "--skip-pip"],
            self.log_path,
            env=env,
        )
        self._token = None
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        """RUNNING, neither recovery nor safe mode, every bioreactor entry loaded."""
        deadline = time.monotonic() + timeout_s
        last = "Home Assistant to answer"
        while True:
            self._fail_if_broken()
            try:
                config = self.api("GET", "/api/config")
                if config["recovery_mode"] or config["safe_mode"]:
                    self._fail("is in recovery/safe mode (it loads no custom integration)")
                last = f"Home Assistant state {config['state']}"
                if config["state"] == "RUNNING":
                    entries = self.api("GET", "/api/config/config_entries/entry?domain=bioreactor")
                    if not entries:
                        self._fail("has no bioreactor config entry")
                    states = {e["state"]: e.get("reason") for e in entries}
                    if failed := FAILED_ENTRY_STATES & states.keys():
                        state = failed.pop()
                        reason = states[state]
                        self._fail(f"could not set up the bioreactor entry: {state} ({reason})")
                    if set(states) == {"loaded"}:
                        return
                    last = f"the bioreactor entry to load ({states})"
            except (OSError, urllib.error.URLError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                self._fail(f"timed out after {timeout_s:.0f} s waiting for {last}")
            time.sleep(0.5)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """An authenticated REST call; returns the decoded JSON answer."""
        if self._token is None:
            self._token = self._login()
        try:
            return self._request(method, path, body, {"Authorization": f"Bearer {self._token}"})
        except urllib.error.HTTPError as err:
            if err.code != 401:
                raise
        self._token = self._login()  # access tokens live 30 minutes
        return self._request(method, path, body, {"Authorization": f"Bearer {self._token}"})

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            process_group.kill(proc)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            process_group.terminate(proc, 60)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Reads the recorder's SQLite database (read-only; HA may be running)."""
        db = self.config_dir / "home-assistant_v2.db"
        if not db.exists():
            return []
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # tables not created yet
        finally:
            conn.close()

    # -- internals -----------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str], *, form: bool = False
    ) -> Any:
        data: bytes | None
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        else:
            data = None if body is None else json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def _login(self) -> str:
        """Onboards the owner on the first start, logs in with its password afterwards."""
        client_id = self.url + "/"
        steps = self._request("GET", "/api/onboarding", None, {})
        if not next(s["done"] for s in steps if s["step"] == "user"):
            code = self._request(
                "POST",
                "/api/onboarding/users",
                {
                    "client_id": client_id,
                    "name": "Harness",
                    "username": USERNAME,
                    "password": self._password,
                    "language": "en",
                },
                {},
            )["auth_code"]
        else:
            flow = self._request(
                "POST",
                "/auth/login_flow",
                {
                    "client_id": client_id,
                    "handler": ["homeassistant", None],
                    "redirect_uri": client_id + "?auth_callback=1",
                },
                {},
            )
            result = self._request(
                "POST",
                f"/auth/login_flow/{flow['flow_id']}",
                {"client_id": client_id, "username": USERNAME, "password": self._password},
                {},
            )
            if "result" not in result:
                self._fail(f"refused the harness owner's login: {result.get('errors')}")
            code = result["result"]
        tokens = self._request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": client_id},
            {},
            form=True,
        )
        return str(tokens["access_token"])

    def _new_log(self) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace")

    def _fail_if_broken(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            self._fail(f"exited with {self._proc.returncode} during start-up")
        if match := RECOVERY_LINE.search(self._new_log()):
            self._fail(f"fell into recovery mode: {match.group(0).strip()}")

    def _fail(self, why: str) -> None:
        errors = [
            line for line in self._new_log().splitlines() if " ERROR " in line or "Error" in line
        ]
        self.kill()
        raise HassStartError(
            f"Home Assistant on port {self.port} {why}.\n"
            f"Errors it logged ({self.log_path}):\n" + "\n".join(errors[-15:])
        )


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
