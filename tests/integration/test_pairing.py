"""Pairing that fails safe, against real HTTP(S) servers on loopback: a zeroconf
announcement moves a configured agent to a new address only once that address answers as
the same agent (with the pinned certificate, when it has one) and takes the stored token;
otherwise nothing changes and the token never goes to a host that named another agent or
presented another certificate. An HTTPS agent's certificate is pinned at pairing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bioreactor.const import CONF_TLS_FINGERPRINT, DOMAIN

from .conftest import AGENT_ID, ENTRY_DATA, FIXTURES, TOKEN
from .tls_server import SelfSigned, make_certificate

pytestmark = pytest.mark.usefixtures("socket_enabled")


@dataclass
class FakeAgent:
    """An HTTP server speaking the agent's API as agent `agent_id` with `token`."""

    agent_id: str = AGENT_ID
    token: str = TOKEN
    tls: SelfSigned | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port or 0

    async def handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        self.requests.append((request.path, authorization))
        status: dict[str, Any] = json.loads((FIXTURES / "status.json").read_text())
        status["agent_id"] = self.agent_id
        if request.path == "/api/v1/info":
            keys = ("agent_id", "name", "firmware_version", "api_version")
            return web.json_response({k: status[k] for k in keys})
        if authorization != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized", "message": "no"}, status=401)
        return web.json_response(status)

    @property
    def tokens_seen(self) -> list[str | None]:
        return [auth for _, auth in self.requests if auth is not None]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FakeAgent], Awaitable[FakeAgent]]]:
    servers: list[TestServer] = []

    async def start(agent: FakeAgent) -> FakeAgent:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", agent.handle)
        agent.server = TestServer(app, host="127.0.0.1")
        await agent.server.start_server(ssl=agent.tls.server_context() if agent.tls else None)
        servers.append(agent.server)
        return agent

    yield start
    for server in servers:
        await server.close()


def announcement(port: int, agent_id: str = AGENT_ID) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address("127.0.0.1"),
        ip_addresses=[ip_address("127.0.0.1")],
        hostname=f"bioreactor-{agent_id}.local.",
        name=f"bioreactor-{agent_id}._bioreactor._tcp.local.",
        port=port,
        properties={"agent_id": agent_id, "api_version": "1", "name": "Bench A"},
        type="_bioreactor._tcp.local.",
    )


async def announce(hass: HomeAssistant, port: int, agent_id: str = AGENT_ID) -> Any:
    return await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=announcement(port, agent_id)
    )


@pytest.fixture
def entry(hass: HomeAssistant) -> MockConfigEntry:
    """A configured agent at an address nothing answers on (TEST-NET-1)."""
    entry = MockConfigEntry(
        domain=DOMAIN, title="Bench A", unique_id=AGENT_ID, data=dict(ENTRY_DATA)
    )
    entry.add_to_hass(hass)
    return entry


async def test_new_address_that_proves_the_agent_is_applied(
    hass: HomeAssistant, entry: MockConfigEntry, serve: Any
) -> None:
    agent = await serve(FakeAgent())
    result = await announce(hass, agent.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data == {**ENTRY_DATA, CONF_HOST: "127.0.0.1", CONF_PORT: agent.port}
    # /info first, without the token; the token only after the agent id matched.
    assert agent.requests == [("/api/v1/info", None), ("/api/v1/status", f"Bearer {TOKEN}")]


async def test_address_answering_as_another_agent_never_gets_the_token(
    hass: HomeAssistant, entry: MockConfigEntry, serve: Any
) -> None:
    impostor = await serve(FakeAgent(agent_id="0000000000000000"))
    result = await announce(hass, impostor.port)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "host_not_verified"
    assert entry.data == ENTRY_DATA
    assert impostor.requests == [("/api/v1/info", None)]
    assert impostor.tokens_seen == []


async def test_address_that_refuses_the_stored_token_is_not_applied(
    hass: HomeAssistant, entry: MockConfigEntry, serve: Any
) -> None:
    """It claims the agent's id (which is public) but does not know its token."""
    claimant = await serve(FakeAgent(token="another-token-" + "x" * 40))
    result = await announce(hass, claimant.port)
    assert result["reason"] == "host_not_verified"
    assert entry.data == ENTRY_DATA


async def test_unreachable_new_address_is_not_applied(
    hass: HomeAssistant, entry: MockConfigEntry, serve: Any
) -> None:
    agent = await serve(FakeAgent())
    port = agent.port
    await agent.server.close()  # the port now refuses connections
    result = await announce(hass, port)
    assert result["reason"] == "host_not_verified"
    assert entry.data == ENTRY_DATA


async def test_same_address_asks_nothing(
    hass: HomeAssistant, entry: MockConfigEntry, serve: Any
) -> None:
    agent = await serve(FakeAgent())
    hass.config_entries.async_update_entry(
        entry, data={**ENTRY_DATA, CONF_HOST: "127.0.0.1", CONF_PORT: agent.port}
    )
    result = await announce(hass, agent.port)
    assert result["reason"] == "already_configured"
    assert agent.requests == []


async def test_ignored_agent_stays_ignored_without_requests(
    hass: HomeAssistant, serve: Any
) -> None:
    MockConfigEntry(domain=DOMAIN, unique_id=AGENT_ID, source=SOURCE_IGNORE, data={}).add_to_hass(
        hass
    )
    agent = await serve(FakeAgent())
    result = await announce(hass, agent.port)
    assert result["reason"] == "already_configured"
    assert agent.requests == []


async def test_announced_agent_id_that_cannot_name_a_directory_is_refused(
    hass: HomeAssistant, serve: Any
) -> None:
    agent = await serve(FakeAgent())
    result = await announce(hass, agent.port, agent_id="../../x")
    assert result["reason"] == "not_an_agent"
    assert agent.requests == []


async def test_manual_setup_sends_the_token_only_to_the_agent_it_named(
    hass: HomeAssistant, serve: Any
) -> None:
    agent = await serve(FakeAgent())
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: agent.port, CONF_TOKEN: TOKEN}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == AGENT_ID
    # (The new entry's own setup polls on afterwards.)
    assert agent.requests[:2] == [("/api/v1/info", None), ("/api/v1/status", f"Bearer {TOKEN}")]


async def test_reauth_does_not_send_the_new_token_to_another_agent(
    hass: HomeAssistant, serve: Any
) -> None:
    impostor = await serve(FakeAgent(agent_id="0000000000000000"))
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Bench A",
        unique_id=AGENT_ID,
        data={**ENTRY_DATA, CONF_HOST: "127.0.0.1", CONF_PORT: impostor.port},
    )
    entry.add_to_hass(hass)
    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: "fresh-token-" + "y" * 40}
    )
    assert result["reason"] == "wrong_agent"
    assert impostor.tokens_seen == []
    assert entry.data[CONF_TOKEN] == TOKEN


# -- HTTPS: trust on first use ----------------------------------------------------------


async def test_discovered_https_agent_is_paired_with_its_certificate_pinned(
    hass: HomeAssistant, serve: Any, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path)
    agent = await serve(FakeAgent(tls=certificate))
    result = await announce(hass, agent.port)
    assert result["step_id"] == "zeroconf_confirm"
    # Shown for the user to compare with what `bioreactor-edge token` prints.
    assert result["description_placeholders"]["fingerprint"] == certificate.fingerprint
    assert agent.requests == []  # the fingerprint comes from the handshake alone

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_TLS_FINGERPRINT] == certificate.fingerprint
    assert agent.requests[:2] == [("/api/v1/info", None), ("/api/v1/status", f"Bearer {TOKEN}")]


async def test_manual_setup_pins_the_certificate(
    hass: HomeAssistant, serve: Any, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path)
    agent = await serve(FakeAgent(tls=certificate))
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: agent.port, CONF_TOKEN: TOKEN}
    )
    # The fingerprint to compare comes first; nothing has been sent yet.
    assert result["step_id"] == "confirm_certificate"
    assert result["description_placeholders"] == {
        "host": "127.0.0.1",
        "fingerprint": certificate.fingerprint,
    }
    assert agent.requests == []

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_TLS_FINGERPRINT] == certificate.fingerprint
    assert agent.requests[:2] == [("/api/v1/info", None), ("/api/v1/status", f"Bearer {TOKEN}")]


async def test_manual_setup_with_a_wrong_token_returns_to_the_form(
    hass: HomeAssistant, serve: Any, tmp_path: Path
) -> None:
    agent = await serve(FakeAgent(tls=make_certificate(tmp_path)))
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: agent.port, CONF_TOKEN: "nope"}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["step_id"] == "user"
    assert result["errors"] == {"base": "invalid_auth"}


async def test_pinned_agent_moves_only_to_an_address_with_its_certificate(
    hass: HomeAssistant, serve: Any, tmp_path: Path
) -> None:
    certificate = make_certificate(tmp_path / "agent")
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Bench A",
        unique_id=AGENT_ID,
        data={**ENTRY_DATA, CONF_TLS_FINGERPRINT: certificate.fingerprint},
    )
    entry.add_to_hass(hass)
    # Same agent id, same token (a stolen backup, say), but not the pinned certificate.
    impostor = await serve(FakeAgent(tls=make_certificate(tmp_path / "impostor")))
    result = await announce(hass, impostor.port)
    assert result["reason"] == "host_not_verified"
    assert impostor.requests == []  # the handshake failed before any request
    assert entry.data[CONF_HOST] == ENTRY_DATA[CONF_HOST]

    agent = await serve(FakeAgent(tls=certificate))
    result = await announce(hass, agent.port)
    assert result["reason"] == "already_configured"
    assert (entry.data[CONF_HOST], entry.data[CONF_PORT]) == ("127.0.0.1", agent.port)
    assert entry.data[CONF_TLS_FINGERPRINT] == certificate.fingerprint
