"""Zeroconf advertisement: the service record, a real registration on loopback, and
the failure path (no multicast) that must never stop the agent."""

from __future__ import annotations

import logging
from unittest.mock import patch

import pytest

from bioreactor_edge.advertise import SERVICE_TYPE, Advertiser, service_info


def test_service_record_carries_identity_and_api_version() -> None:
    info = service_info(
        agent_id="ab" * 8, name="Bench A", port=8421, tls=False, addresses=["127.0.0.1"]
    )
    assert info.type == SERVICE_TYPE == "_bioreactor._tcp.local."
    assert info.name == f"bioreactor-{'ab' * 8}.{SERVICE_TYPE}"
    assert info.port == 8421
    assert info.decoded_properties == {
        "agent_id": "ab" * 8,
        "api_version": "1",
        "name": "Bench A",
        "tls": "0",
    }
    assert info.parsed_addresses() == ["127.0.0.1"]


async def test_registers_and_withdraws_on_loopback() -> None:
    advertiser = Advertiser(
        agent_id="cd" * 8, name="Bench B", port=8422, tls=True,
        interfaces=["127.0.0.1"], addresses=["127.0.0.1"],
    )  # fmt: skip
    assert await advertiser.start()
    assert advertiser.info.decoded_properties["tls"] == "1"
    await advertiser.close()
    await advertiser.close()  # idempotent


async def test_no_multicast_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    advertiser = Advertiser(agent_id="ef" * 8, name="C", port=1, tls=False, addresses=["127.0.0.1"])
    with (
        patch("bioreactor_edge.advertise.AsyncZeroconf", side_effect=OSError("no multicast")),
        caplog.at_level(logging.WARNING),
    ):
        assert not await advertiser.start()
    assert "not advertising over zeroconf: no multicast" in caplog.text
    await advertiser.close()
