"""A real Home Assistant process with this integration, for end-to-end fault tests.

The configuration holds an explicit list of integrations (recorder on SQLite) and a
pre-made config entry for one edge agent, so no onboarding or UI flow is needed.
Runs on the Home Assistant venv's python (the one running the test).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from homeassistant.config_entries import STORAGE_VERSION, STORAGE_VERSION_MINOR, ConfigEntry

from tests.support import process_group

REPO = Path(__file__).resolve().parents[2]
CONFIGURATION = """\
homeassistant:
  name: Fault harness
  unit_system: metric
  time_zone: UTC
recorder:
  commit_interval: 1
logger:
  default: warning
  logs:
    custom_components.bioreactor: info
"""


@dataclass
class HassProcess:
    config_dir: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def configure(self, *, agent_id: str, name: str, port: int, token: str) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION)
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

    def start(self) -> None:
        assert self._proc is None
        self._proc = process_group.spawn(
            [sys.executable, "-m", "homeassistant", "-c", str(self.config_dir), "--skip-pip"],
            self.config_dir / "hass-stdout.log",
        )

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


def wait_for(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)
