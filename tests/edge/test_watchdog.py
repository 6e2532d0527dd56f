"""systemd notifications: READY once serving, WATCHDOG=1 only while control ticks,
STOPPING on the way out - over a real datagram socket, as systemd receives them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bioreactor_edge.agent import Agent
from bioreactor_edge.control import runner
from bioreactor_edge.simulator.lab import build_reactor_bus
from bioreactor_edge.simulator.physics import ReactorModel
from bioreactor_edge.watchdog import Notifier
from tests.edge.test_agent import RATE_HZ, TIMING, fast_config, single_bus, wait_for
from tests.support.agent_process import free_ports


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """A bound datagram socket standing in for systemd's notification socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(30)
        yield sock


def received(sock: socket.socket, until: str, within_s: float = 30.0) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + within_s
    while until not in messages:
        assert time.monotonic() < deadline, f"no {until!r} in {within_s} s: {messages[-5:]}"
        messages.append(sock.recv(4096).decode())
    return messages


@pytest.mark.parametrize(
    ("environ", "address", "watchdog_s"),
    [
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, "/run/systemd/notify", None),
        ({"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "30000000"}, "\0sd", 30.0),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "PID"}, "/n", 0.5),
        # Meant for another process (the agent's parent): not ours to keep alive.
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "0"}, "/n", None),
        ({"NOTIFY_SOCKET": "/n", "WATCHDOG_USEC": "soon"}, "/n", None),
    ],
)
def test_the_environment_systemd_sets(
    environ: dict[str, str], address: str, watchdog_s: float | None
) -> None:
    if environ.get("WATCHDOG_PID") == "PID":
        environ = {**environ, "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier.from_environment(environ)
    assert notifier is not None
    assert (notifier.address, notifier.watchdog_s) == (address, watchdog_s)


def test_outside_systemd_nothing_is_sent() -> None:
    assert Notifier.from_environment({}) is None
    assert Notifier.from_environment({"NOTIFY_SOCKET": ""}) is None


def test_abstract_socket_names_reach_their_socket() -> None:
    name = f"bioreactor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        Notifier("@" + name, None).send("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_a_missing_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"), 1.0)
    with caplog.at_level(logging.WARNING, logger="bioreactor_edge.watchdog"):
        for _ in range(3):
            notifier.send("WATCHDOG=1")
    assert [r.message for r in caplog.records] == [
        f"cannot notify systemd ({tmp_path / 'gone'}): [Errno 2] No such file or directory"
    ]


async def test_keep_alive_only_while_responsive(systemd: socket.socket, tmp_path: Path) -> None:
    systemd.setblocking(False)
    responsive = True
    notifier = Notifier(str(tmp_path / "notify"), 0.1)
    task = asyncio.create_task(notifier.keep_alive(lambda: responsive))
    try:
        await asyncio.sleep(0.32)
        pings = drain(systemd)
        assert pings and set(pings) == {"WATCHDOG=1"}
        responsive = False
        await asyncio.sleep(0.06)  # a keep-alive decided before the change may still come
        drain(systemd)
        await asyncio.sleep(0.3)
        assert drain(systemd) == []
        responsive = True
        await asyncio.sleep(0.3)
        assert drain(systemd) != []
    finally:
        task.cancel()


def drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(64).decode())
        except BlockingIOError:
            return messages


async def test_a_stalled_control_loop_withholds_the_keep_alive(
    tmp_path: Path, systemd: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "STALL_S", 0.5)
    systemd.setblocking(False)
    bus = build_reactor_bus(ReactorModel(seed=4), sensors=4, speed=RATE_HZ, seed=4)
    agent = Agent(fast_config(tmp_path), agent_id="e" * 16, raw_bus=single_bus(bus), timing=TIMING)
    await agent.start()
    keep_alive = asyncio.create_task(
        Notifier(str(tmp_path / "notify"), 0.1).keep_alive(agent.responsive)
    )
    try:
        await wait_for(lambda: not agent.discovering)
        await wait_for(lambda: "WATCHDOG=1" in drain(systemd))
        assert "control_stalled" not in agent.status()["problems"]
        control = agent.control
        assert control is not None

        async def stuck() -> None:  # a tick waiting on a bus that never answers
            await asyncio.Event().wait()

        control.tick = stuck  # type: ignore[method-assign]
        await wait_for(lambda: not agent.responsive(), timeout=5)
        assert "control_stalled" in agent.status()["problems"]
        await asyncio.sleep(0.06)
        drain(systemd)
        await asyncio.sleep(0.3)
        assert drain(systemd) == []  # systemd kills the agent; the restart makes all safe
    finally:
        keep_alive.cancel()
        await agent.stop()


def test_the_agent_tells_systemd_it_is_ready_alive_and_stopping(
    tmp_path: Path, systemd: socket.socket
) -> None:
    port = free_ports(1)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    args = ["simulate", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bioreactor_edge", *args, "--token", "t" * 43, "--rate", "5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        first = received(systemd, until="READY=1\nSTATUS=serving 1 agent(s)")
        assert "WATCHDOG=1" not in first  # nothing before the API serves
        pings = [systemd.recv(64).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        assert time.monotonic() - started < 30
        proc.send_signal(signal.SIGTERM)
        assert received(systemd, until="STOPPING=1")[-1] == "STOPPING=1"
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
