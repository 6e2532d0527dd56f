"""Config flow: manual setup, zeroconf discovery, reauthentication, reconfiguration,
and options (recorder resolutions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import probatio as vol
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .api import (
    AgentInfo,
    BioreactorAuthenticationError,
    BioreactorClient,
    BioreactorConnectionError,
    BioreactorError,
)
from .const import CONF_RESOLUTIONS, DEFAULT_PORT, DEFAULT_RESOLUTIONS, DOMAIN

TOKEN_SCHEMA = vol.Schema({vol.Required(CONF_TOKEN): str})


def _connection_schema(host: str = "", port: int = DEFAULT_PORT) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=host): str,
            vol.Required(CONF_PORT, default=port): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=65535)
            ),
            vol.Required(CONF_TOKEN): str,
        }
    )


class BioreactorConfigFlow(ConfigFlow, domain=DOMAIN):
    """Sets up one edge agent per entry; the agent id is the unique id."""

    VERSION = 1

    def __init__(self) -> None:
        self._host = ""
        self._port = DEFAULT_PORT
        self._name = ""

    async def _validate(
        self, host: str, port: int, token: str
    ) -> tuple[AgentInfo | None, dict[str, str]]:
        client = BioreactorClient(host, port, token, async_get_clientsession(self.hass))
        try:
            info = await client.info()
            # /info is public: /status proves the token.
            await client.status()
        except BioreactorAuthenticationError:
            return None, {"base": "invalid_auth"}
        except BioreactorConnectionError:
            return None, {"base": "cannot_connect"}
        except BioreactorError:
            return None, {"base": "not_an_agent"}
        return info, {}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            info, errors = await self._validate(host, port, user_input[CONF_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info.agent_id)
                self._abort_if_unique_id_configured(updates={CONF_HOST: host, CONF_PORT: port})
                return self.async_create_entry(
                    title=info.name,
                    data={CONF_HOST: host, CONF_PORT: port, CONF_TOKEN: user_input[CONF_TOKEN]},
                )
            self._host, self._port = host, port
        return self.async_show_form(
            step_id="user", data_schema=_connection_schema(self._host, self._port), errors=errors
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        agent_id = discovery_info.properties.get("agent_id")
        if not agent_id or discovery_info.properties.get("api_version") != "1":
            return self.async_abort(reason="not_an_agent")
        self._host, self._port = discovery_info.host, discovery_info.port or DEFAULT_PORT
        await self.async_set_unique_id(agent_id)
        # A known agent at a new address: update it and reload the entry.
        self._abort_if_unique_id_configured(updates={CONF_HOST: self._host, CONF_PORT: self._port})
        self._name = discovery_info.properties.get("name") or agent_id
        self.context["title_placeholders"] = {"name": self._name}
        return await self.async_step_zeroconf_confirm()

    async def async_step_zeroconf_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(self._host, self._port, user_input[CONF_TOKEN])
            if info is not None:
                return self.async_create_entry(
                    title=info.name,
                    data={
                        CONF_HOST: self._host,
                        CONF_PORT: self._port,
                        CONF_TOKEN: user_input[CONF_TOKEN],
                    },
                )
        return self.async_show_form(
            step_id="zeroconf_confirm",
            data_schema=TOKEN_SCHEMA,
            errors=errors,
            description_placeholders={"name": self._name, "host": self._host},
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            info, errors = await self._validate(
                entry.data[CONF_HOST], entry.data[CONF_PORT], user_input[CONF_TOKEN]
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
            info, errors = await self._validate(host, port, user_input[CONF_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info.agent_id)
                self._abort_if_unique_id_mismatch(reason="wrong_agent")
                return self.async_update_reload_and_abort(
                    entry,
                    data_updates={
                        CONF_HOST: host,
                        CONF_PORT: port,
                        CONF_TOKEN: user_input[CONF_TOKEN],
                    },
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_connection_schema(entry.data[CONF_HOST], entry.data[CONF_PORT]),
            errors=errors,
        )

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> BioreactorOptionsFlow:
        return BioreactorOptionsFlow()


# Option keys are units; the form shows them with translated labels.
RESOLUTION_FIELDS = {
    "ph": "pH",
    "temperature": "°C",
    "dissolved_oxygen": "mg/L",
    "orp": "mV",
    "conductivity": "µS/cm",
}


class BioreactorOptionsFlow(OptionsFlowWithReload):
    """How much a value must move before a new state is recorded."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        current = {**DEFAULT_RESOLUTIONS, **self.config_entry.options.get(CONF_RESOLUTIONS, {})}
        if user_input is not None:
            return self.async_create_entry(
                data={
                    CONF_RESOLUTIONS: {
                        unit: float(user_input[field]) for field, unit in RESOLUTION_FIELDS.items()
                    }
                }
            )
        schema = vol.Schema(
            {
                vol.Required(field, default=current[unit]): vol.All(
                    vol.Coerce(float), vol.Range(min=0, max=1000)
                )
                for field, unit in RESOLUTION_FIELDS.items()
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)
