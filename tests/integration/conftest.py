"""Fixtures for the Home Assistant integration tests."""

from __future__ import annotations

# PHCC puts its own testing_config first on sys.path; importing our package
# before the hass fixture runs makes HA find this integration (see docs/toolchain.md).
import custom_components.bioreactor  # noqa: F401
import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/bioreactor in every test."""
