"""Subprocesses in a session of their own, so a kill reaches everything they started."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn(
    args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts `args` with stdout and stderr appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the whole group: no shutdown code runs."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """SIGTERM and wait; kills the group and returns False if it did not end in time."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(proc)
        return False
    return True
