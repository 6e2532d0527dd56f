"""Config flow: manual setup, zeroconf discovery, reauthentication, reconfiguration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import probatio as vol
from homeassistant.config_entries import (
    SOURCE_IGNORE,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .api import (
    AgentInfo,
    BioreactorAuthenticationError,
    BioreactorCertificateError,
    BioreactorClient,
    BioreactorConnectionError,
    BioreactorError,
    BioreactorRateLimitedError,
    valid_id,
)
from .calibration import BioreactorOptionsFlow
from .const import CONF_TLS_FINGERPRINT, DEFAULT_PORT, DOMAIN, LOGGER

# The token is a secret: typed into a password field, never shown back.
TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
TOKEN_SCHEMA = vol.Schema({vol.Required(CONF_TOKEN): TOKEN_SELECTOR})


def _connection_schema(host: str = "", port: int = DEFAULT_PORT) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=host): str,
            vol.Required(CONF_PORT, default=port): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=65535)
            ),
            vol.Required(CONF_TOKEN): TOKEN_SELECTOR,
        }
    )


# The form error for each client error, the first that matches.
FORM_ERRORS: tuple[tuple[type[BioreactorError], str], ...] = (
    (BioreactorCertificateError, "certificate_changed"),
    (BioreactorAuthenticationError, "invalid_auth"),
    (BioreactorRateLimitedError, "rate_limited"),
    (BioreactorConnectionError, "cannot_connect"),
    (BioreactorError, "not_an_agent"),
)


class BioreactorConfigFlow(ConfigFlow, domain=DOMAIN):
    """Sets up one edge agent per entry; the agent id is the unique id."""

    VERSION = 1
    # 1.2: states on every change, the recorder-resolution options gone (async_migrate_entry).
    MINOR_VERSION = 2

    def __init__(self) -> None:
        self._host = ""
        self._port = DEFAULT_PORT
        self._name = ""
        self._fingerprint: str | None = None
        self._token = ""

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        """Settings and guided calibration (calibration.py)."""
        return BioreactorOptionsFlow()

    async def _probe_certificate(self, host: str, port: int) -> bool:
        """Trust on first use: remembers the certificate the agent presents now (None for
        plain HTTP) to pin it; False when nothing answers there."""
        client = BioreactorClient(host, port, None, async_get_clientsession(self.hass))
        try:
            self._fingerprint = await client.certificate_fingerprint()
        except BioreactorError:
            return False
        return True

    async def _pair(
        self, host: str, port: int, token: str, expected_agent: str | None = None
    ) -> tuple[AgentInfo | None, dict[str, str]]:
        """First contact with host:port: pins its certificate, then validates."""
        if not await self._probe_certificate(host, port):
            return None, {"base": "cannot_connect"}
        return await self._validate(host, port, token, self._fingerprint, expected_agent)

    async def _validate(
        self,
        host: str,
        port: int,
        token: str,
        fingerprint: str | None,
        expected_agent: str | None = None,
    ) -> tuple[AgentInfo | None, dict[str, str]]:
        """The agent at host:port, once the token works there.

        Over HTTPS to exactly the certificate `fingerprint` (plain HTTP when None). /info
        is public and asked without the token; /status then proves the token, and only
        from the agent /info named. When /info names another agent than `expected_agent`,
        its info comes back unproven and the token is not sent: the caller refuses that
        agent.
        """
        session = async_get_clientsession(self.hass)
        try:
            info = await BioreactorClient(
                host, port, None, session, tls_fingerprint=fingerprint
            ).info()
            if expected_agent is not None and info.agent_id != expected_agent:
                return info, {}
            await BioreactorClient(
                host, port, token, session, agent_id=info.agent_id, tls_fingerprint=fingerprint
            ).status()
        except BioreactorError as err:
            return None, {"base": next(code for kind, code in FORM_ERRORS if isinstance(err, kind))}
        return info, {}

    async def _proves_to_be(self, entry: ConfigEntry) -> bool:
        """Whether the discovered address answers as `entry`'s agent and takes its token."""
        # The pinned certificate, never a new one: an impostor's TLS handshake fails
        # before the token is sent.
        info, errors = await self._validate(
            self._host,
            self._port,
            entry.data[CONF_TOKEN],
            entry.data.get(CONF_TLS_FINGERPRINT),
            expected_agent=entry.unique_id,
        )
        if info is not None and info.agent_id == entry.unique_id:
            return True
        LOGGER.warning(
            "%s was announced at %s:%s, but that address %s; its address stays %s:%s",
            entry.title,
            self._host,
            self._port,
            f"answers as agent {info.agent_id}" if info else f"failed: {errors['base']}",
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
        )
        return False

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            self._host, self._port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            self._token = user_input[CONF_TOKEN]
            if not await self._probe_certificate(self._host, self._port):
                errors = {"base": "cannot_connect"}
            elif self._fingerprint is not None:
                # HTTPS: the user compares the fingerprint before the token is sent.
                return await self.async_step_confirm_certificate()
            else:
                return await self._create_or_update()
        return self.async_show_form(
            step_id="user", data_schema=_connection_schema(self._host, self._port), errors=errors
        )

    async def async_step_confirm_certificate(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        if user_input is not None:
            return await self._create_or_update()
        return self.async_show_form(
            step_id="confirm_certificate",
            description_placeholders={"host": self._host, "fingerprint": self._fingerprint or ""},
        )

    async def _create_or_update(self) -> ConfigFlowResult:
        """Validates the manual step's input; a known agent gets the new connection."""
        info, errors = await self._validate(self._host, self._port, self._token, self._fingerprint)
        if info is None:
            return self.async_show_form(
                step_id="user",
                data_schema=_connection_schema(self._host, self._port),
                errors=errors,
            )
        await self.async_set_unique_id(info.agent_id)
        connection = {CONF_HOST: self._host, CONF_PORT: self._port, **self._pinned()}
        self._abort_if_unique_id_configured(updates=connection)
        return self.async_create_entry(
            title=info.name, data={**connection, CONF_TOKEN: self._token}
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        agent_id = discovery_info.properties.get("agent_id")
        if (
            not agent_id
            or not valid_id(agent_id)
            or discovery_info.properties.get("api_version") != "1"
        ):
            return self.async_abort(reason="not_an_agent")
        self._host, self._port = discovery_info.host, discovery_info.port or DEFAULT_PORT
        await self.async_set_unique_id(agent_id)
        entry = self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, agent_id)
        if (
            entry is not None
            and entry.source != SOURCE_IGNORE
            and (entry.data[CONF_HOST], entry.data[CONF_PORT]) != (self._host, self._port)
        ):
            # Anyone can announce any agent id: the entry (and its token) moves to the
            # new address only once that address proves to be the same agent.
            if not await self._proves_to_be(entry):
                return self.async_abort(reason="host_not_verified")
            self._abort_if_unique_id_configured(
                updates={CONF_HOST: self._host, CONF_PORT: self._port}
            )
        self._abort_if_unique_id_configured()
        self._name = discovery_info.properties.get("name") or agent_id
        self.context["title_placeholders"] = {"name": self._name}
        # The certificate is shown for the user to compare before the token is typed.
        if not await self._probe_certificate(self._host, self._port):
            return self.async_abort(reason="cannot_connect")
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(
                self._host, self._port, user_input[CONF_TOKEN], self._fingerprint
            )
            if info is not None:
                return self.async_create_entry(
                    title=info.name,
                    data={
                        CONF_HOST: self._host,
                        CONF_PORT: self._port,
                        CONF_TOKEN: user_input[CONF_TOKEN],
                        **self._pinned(),
                    },
                )
        return self.async_show_form(
            step_id="zeroconf_confirm",
            data_schema=TOKEN_SCHEMA,
            errors=errors,
            description_placeholders={
                "name": self._name,
                "host": self._host,
                "fingerprint": self._fingerprint or "none (plain HTTP)",
            },
        )

    def _pinned(self) -> dict[str, str]:
        return {} if self._fingerprint is None else {CONF_TLS_FINGERPRINT: self._fingerprint}

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(
                entry.data[CONF_HOST],
                entry.data[CONF_PORT],
                user_input[CONF_TOKEN],
                entry.data.get(CONF_TLS_FINGERPRINT),
                expected_agent=entry.unique_id,
            )
            if info is not None:
                await self.async_set_unique_id(info.agent_id)
                self._abort_if_unique_id_mismatch(reason="wrong_agent")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_TOKEN: user_input[CONF_TOKEN]}
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=TOKEN_SCHEMA,
            errors=errors,
            description_placeholders={"name": entry.title},
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            # A deliberate reconfiguration pins whatever certificate the agent has now.
            info, errors = await self._pair(
                host, port, user_input[CONF_TOKEN], expected_agent=entry.unique_id
            )
            if info is not None:
                await self.async_set_unique_id(info.agent_id)
                self._abort_if_unique_id_mismatch(reason="wrong_agent")
                return self.async_update_reload_and_abort(
                    entry,
                    data={
                        CONF_HOST: host,
                        CONF_PORT: port,
                        CONF_TOKEN: user_input[CONF_TOKEN],
                        **self._pinned(),
                    },
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_connection_schema(entry.data[CONF_HOST], entry.data[CONF_PORT]),
            errors=errors,
        )
