"""`./scripts/demo` refuses a taken port before touching anything, and a later start
follows DEMO_HA_PORT although Home Assistant stored the first start's port."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
from pathlib import Path
from types import ModuleType

from tests.support.agent_process import free_port, free_ports

from .demo_lab import REPO


def demo_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "demo_setup", REPO / "scripts" / "lib" / "demo_setup.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_taken_port_is_refused_and_nothing_is_reset(tmp_path: Path) -> None:
    kept = tmp_path / "homeassistant" / "kept.txt"
    kept.parent.mkdir()
    kept.write_text("data of a running demo")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = subprocess.run(
            [str(REPO / "scripts" / "demo"), "--reset"],
            env={
                **os.environ,
                "DEMO_DIR": str(tmp_path),
                "DEMO_HA_PORT": str(taken),
                "DEMO_AGENT_PORT": str(free_ports(3)),
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert result.returncode != 0
    assert f"port(s) {taken} already in use" in result.stderr
    assert "DEMO_HA_PORT=" in result.stderr
    assert kept.read_text() == "data of a running demo"


def test_a_later_start_follows_demo_ha_port(tmp_path: Path) -> None:
    store = tmp_path / ".storage" / "http"
    store.parent.mkdir()
    stored = {
        "version": 2,
        "minor_version": 2,
        "key": "http",
        "data": {
            "stable": {"server_port": 8123, "cors_allowed_origins": ["x"]},
            "pending": {"server_port": 9000},
            "yaml_migration_done": True,
        },
    }
    store.write_text(json.dumps(stored))
    port = free_port()
    demo_setup().pin_http_port(tmp_path, port)
    data = json.loads(store.read_text())["data"]
    assert data["stable"] == {"server_port": port, "cors_allowed_origins": ["x"]}
    assert data["pending"] is None
    assert data["yaml_migration_done"] is True
