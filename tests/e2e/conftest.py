"""One demo stack (./scripts/demo on free ports) for every end-to-end test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .demo_lab import DemoLab


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots and logs, outside the repository; printed so CI logs point at them."""
    directory = Path(
        os.environ.get("BIOREACTOR_E2E_ARTIFACTS") or tempfile.mkdtemp(prefix="bioreactor-e2e-")
    )
    directory.mkdir(parents=True, exist_ok=True)
    print(f"\nend-to-end artifacts: {directory}")
    return directory


@pytest.fixture(scope="session")
def demo(artifacts: Path) -> Iterator[DemoLab]:
    lab = DemoLab(artifacts / "demo")
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
