"""A real edge agent (`bioreactor-edge simulate`) as a subprocess for fault tests.

Stdlib only and Python 3.11-compatible, so both halves' tests can use it. The
agent runs with `--record`: every reading it journaled durably is logged, which
is the oracle the delivered archive is checked against.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import process_group

TOKEN = "fault-harness-token-" + "x" * 32


def edge_python() -> str:
    """The edge half's interpreter, which ./scripts/test exports for the other half's tests."""
    python = os.environ.get("BIOREACTOR_EDGE_PYTHON")
    assert python, "run through ./scripts/test, which sets BIOREACTOR_EDGE_PYTHON"
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` consecutive free loopback ports (simulate uses P..P+N-1)."""
    while True:
        base = free_port()
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


@dataclass
class AgentProcess:
    """One simulated agent process; restartable on the same data dir and port."""

    python: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    rate_hz: float = 20.0
    sensors: int = 4
    token: str = TOKEN
    extra_args: tuple[str, ...] = ()
    starts: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "agent-0"

    def start(self) -> None:
        assert self._proc is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._proc = process_group.spawn(
            [
                self.python,
                "-m",
                "bioreactor_edge",
                "simulate",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--token",
                self.token,
                "--rate",
                str(self.rate_hz),
                "--sensors-per-reactor",
                str(self.sensors),
                "--record",
                *self.extra_args,
            ],
            self.data_dir / "agent.log",
        )
        self.starts += 1

    def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                status: dict[str, Any] = self.get("/api/v1/status")
            except (OSError, urllib.error.URLError):
                status = {}
            # The agent answers from its first second; ready means its first
            # discovery has finished too, so its sensors are listed.
            if status.get("discovery", {}).get("state") == "idle":
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"agent not ready: {self.log_tail()}") from None
            time.sleep(0.05)

    def get(self, path: str) -> Any:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        proc, self._proc = self._proc, None
        if proc is not None:
            process_group.kill(proc)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and not process_group.terminate(proc, 15):
            raise AssertionError("agent ignored SIGTERM")

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "agent.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def generated(self) -> dict[tuple[str, str, int], float]:
        """The oracle: (sensor, quantity, time_ms) -> value of every journaled reading."""
        record: dict[tuple[str, str, int], float] = {}
        path = self.agent_dir / "generated.log"
        # Only newline-terminated lines: a killed process may leave its last one cut short.
        for line in path.read_text().split("\n")[:-1]:
            sensor, quantity, time_ms, value = line.split(" ")
            record[sensor, quantity, int(time_ms)] = float(value)
        return record


@contextlib.contextmanager
def running_agent(
    data_dir: Path,
    *,
    rate_hz: float,
    sensors: int = 4,
    extra_args: tuple[str, ...] = (),
    python: str | None = None,
) -> Iterator[AgentProcess]:
    """An agent started and ready (its first discovery done), stopped however the block ends."""
    process = AgentProcess(
        python or edge_python(), data_dir, rate_hz=rate_hz, sensors=sensors, extra_args=extra_args
    )
    process.start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
