"""Config flow: user, zeroconf (with host update), reauth, reconfigure."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any
from unittest.mock import AsyncMock

import pytest
from homeassistant.config_entries import SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.selector import TextSelector, TextSelectorType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.api import (
    BioreactorAuthenticationError,
    BioreactorConnectionError,
    BioreactorProtocolError,
    BioreactorRateLimitedError,
)
from custom_components.bioreactor.const import DOMAIN

from .conftest import AGENT_ID, ENTRY_DATA, TOKEN

pytestmark = pytest.mark.usefixtures("mock_client")


def zeroconf_info(host: str = "192.0.2.20", **properties: str) -> ZeroconfServiceInfo:
    props = {"agent_id": AGENT_ID, "api_version": "1", "name": "Bench A", **properties}
    return ZeroconfServiceInfo(
        ip_address=ip_address(host),
        ip_addresses=[ip_address(host)],
        hostname=f"bioreactor-{AGENT_ID}.local.",
        name=f"bioreactor-{AGENT_ID}._bioreactor._tcp.local.",
        port=8421,
        properties=props,
        type="_bioreactor._tcp.local.",
    )


async def test_user_flow_creates_entry(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**ENTRY_DATA, CONF_HOST: " 192.0.2.10 "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Simulated bench 1"
    assert result["data"] == ENTRY_DATA
    assert result["result"].unique_id == AGENT_ID


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (BioreactorConnectionError("down"), "cannot_connect"),
        (BioreactorAuthenticationError("no"), "invalid_auth"),
        # A rate limit is temporary: never reported as a wrong token.
        (BioreactorRateLimitedError(30), "rate_limited"),
        (BioreactorProtocolError("odd"), "not_an_agent"),
    ],
)
async def test_user_flow_errors_then_recovers(
    hass: HomeAssistant, mock_client: AsyncMock, error: Exception, reason: str
) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    original = mock_client.status.side_effect
    mock_client.status.side_effect = error
    result = await hass.config_entries.flow.async_configure(result["flow_id"], ENTRY_DATA)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": reason}

    mock_client.status.side_effect = original
    result = await hass.config_entries.flow.async_configure(result["flow_id"], ENTRY_DATA)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_user_flow_unreachable_host(hass: HomeAssistant, mock_client: AsyncMock) -> None:
    """Nothing answers the certificate probe: nothing else is tried."""
    mock_client.certificate_fingerprint.side_effect = BioreactorConnectionError("refused")
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(result["flow_id"], ENTRY_DATA)
    assert result["errors"] == {"base": "cannot_connect"}
    mock_client.info.assert_not_called()
    mock_client.status.assert_not_called()


async def test_user_flow_aborts_for_known_agent_and_updates_host(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**ENTRY_DATA, CONF_HOST: "192.0.2.99"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert mock_config_entry.data[CONF_HOST] == "192.0.2.99"


async def test_zeroconf_discovery_asks_for_the_token(
    hass: HomeAssistant, mock_client: AsyncMock
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info()
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "zeroconf_confirm"
    assert result["description_placeholders"] == {
        "name": "Bench A",
        "host": "192.0.2.20",
        "fingerprint": "none (plain HTTP)",
    }

    mock_client.status.side_effect = BioreactorAuthenticationError("no")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "wrong"}
    )
    assert result["errors"] == {"base": "invalid_auth"}

    mock_client.status.side_effect = None
    mock_client.status.return_value = None
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_HOST: "192.0.2.20", CONF_PORT: 8421, CONF_TOKEN: TOKEN}


async def test_zeroconf_updates_the_host_of_a_known_agent(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info("192.0.2.77")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert mock_config_entry.data[CONF_HOST] == "192.0.2.77"
    assert mock_config_entry.data[CONF_PORT] == 8421


@pytest.mark.parametrize("properties", [{"agent_id": ""}, {"api_version": "2"}])
async def test_zeroconf_ignores_other_services(
    hass: HomeAssistant, properties: dict[str, Any]
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(**properties)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_an_agent"


async def test_reauth_replaces_the_token(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"

    original = mock_client.status.side_effect
    mock_client.status.side_effect = BioreactorAuthenticationError("no")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "bad"})
    assert result["errors"] == {"base": "invalid_auth"}

    mock_client.status.side_effect = original
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "new"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert mock_config_entry.data[CONF_TOKEN] == "new"


async def test_reauth_refuses_another_agent(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    status_payload: dict[str, Any],
) -> None:
    mock_config_entry.add_to_hass(hass)
    status_payload["agent_id"] = "0000000000000000"
    result = await mock_config_entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "x"})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_agent"
    assert mock_config_entry.data[CONF_TOKEN] == TOKEN


async def test_reconfigure_changes_host_port_and_token(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, mock_client: AsyncMock
) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"

    original = mock_client.status.side_effect
    mock_client.status.side_effect = BioreactorConnectionError("down")
    changed = {CONF_HOST: "192.0.2.55", CONF_PORT: 9000, CONF_TOKEN: "other"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], changed)
    assert result["errors"] == {"base": "cannot_connect"}

    mock_client.status.side_effect = original
    result = await hass.config_entries.flow.async_configure(result["flow_id"], changed)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert dict(mock_config_entry.data) == changed


async def test_token_is_a_password_field_in_every_form(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    forms = [
        await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER}),
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(agent_id="other")
        ),
        await mock_config_entry.start_reauth_flow(hass),
        await mock_config_entry.start_reconfigure_flow(hass),
    ]
    for form in forms:
        assert form["type"] is FlowResultType.FORM
        token = next(v for k, v in form["data_schema"].schema.items() if k == CONF_TOKEN)
        assert isinstance(token, TextSelector), form["step_id"]
        assert token.config["type"] == TextSelectorType.PASSWORD, form["step_id"]
