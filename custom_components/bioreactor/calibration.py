"""Guided calibration from Home Assistant (docs/calibration.md).

The options flow walks the user through one sensor's points, one step per point
with its instructions, the live reading and its stability; the
`bioreactor.calibrate` action commits a single point; a repair issue appears
when a sensor's calibration is older than the configured interval. The agent
enforces the order of the points and commits only stable readings: this module
shows its progress and turns its refusals into translated messages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import probatio as vol
from homeassistant.config_entries import ConfigEntryState, ConfigFlowResult, OptionsFlow
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import (
    config_validation as cv,
    entity_registry as er,
    issue_registry as ir,
)
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
)
from homeassistant.util import dt as dt_util

from .api import (
    BioreactorClient,
    BioreactorError,
    BioreactorRequestError,
    CalibrationSession,
    Sensor,
    SensorCalibration,
)
from .const import DOMAIN
from .coordinator import BioreactorConfigEntry, BioreactorCoordinator

CALIBRATABLE = ("ph", "do", "ec")
# Every point of every kind, as the agent names them (and as the steps are named).
POINTS = {"ph": ("mid", "low", "high"), "do": ("atmospheric", "zero"),
          "ec": ("dry", "low", "high")}  # fmt: skip
CONF_CALIBRATION_INTERVAL = "calibration_interval_days"
DEFAULT_CALIBRATION_INTERVAL_DAYS = 30
# The agent's refusal codes that have their own translated message; others show its text.
REFUSALS = frozenset(
    {"out_of_order", "not_stable", "implausible", "sensor_unavailable", "chip_refused", "busy",
     "no_session", "not_calibratable"}
)  # fmt: skip
SERVICE_CALIBRATE = "calibrate"
CALIBRATE_SCHEMA = vol.Schema(
    {
        vol.Required("entity_id"): cv.entity_id,
        vol.Required("point"): vol.In(sorted({p for points in POINTS.values() for p in points})),
        vol.Optional("value"): vol.Coerce(float),
    }
)


def calibration_interval(entry: BioreactorConfigEntry) -> timedelta:
    days = entry.options.get(CONF_CALIBRATION_INTERVAL, DEFAULT_CALIBRATION_INTERVAL_DAYS)
    return timedelta(days=days)


def _error_key(err: BioreactorRequestError) -> str:
    return err.code if err.code in REFUSALS else "rejected"


def _slope_text(result: SensorCalibration | None) -> str:
    if result is None or result.slope is None:
        return "—"
    slope = result.slope
    offset = "" if slope.offset_mv is None else f", offset {slope.offset_mv:g} mV"
    return f"acid {slope.acid_pct:g} %, base {slope.base_pct:g} %{offset}"


def _sensor_label(coordinator: BioreactorCoordinator, sensor: Sensor) -> str:
    reactor = next(r for r in coordinator.data.reactors if sensor in r.sensors)
    return f"{reactor.name} · {sensor.model} (0x{sensor.address:02x})"


class BioreactorOptionsFlow(OptionsFlow):
    """Settings, and the guided calibration of one sensor at a time."""

    def __init__(self) -> None:
        self._sensor = ""
        self._label = ""
        self._session: CalibrationSession | None = None

    @property
    def _coordinator(self) -> BioreactorCoordinator:
        coordinator: BioreactorCoordinator = self.config_entry.runtime_data
        return coordinator

    @property
    def _client(self) -> BioreactorClient:
        return self._coordinator.client

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        return self.async_show_menu(step_id="init", menu_options=["calibrate", "settings"])

    async def async_step_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        if user_input is not None:
            days = int(user_input[CONF_CALIBRATION_INTERVAL])
            return self.async_create_entry(
                data={**self.config_entry.options, CONF_CALIBRATION_INTERVAL: days}
            )
        current = calibration_interval(self.config_entry).days
        schema = vol.Schema(
            {
                vol.Required(CONF_CALIBRATION_INTERVAL, default=current): NumberSelector(
                    NumberSelectorConfig(
                        min=1, max=365, step=1, mode=NumberSelectorMode.BOX, unit_of_measurement="d"
                    )
                )
            }
        )
        return self.async_show_form(step_id="settings", data_schema=schema)

    async def async_step_calibrate(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        if self.config_entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="cannot_connect")  # no agent status to choose from
        coordinator = self._coordinator
        sensors = {
            s.id: _sensor_label(coordinator, s)
            for r in coordinator.data.reactors
            for s in r.sensors
            if s.kind in CALIBRATABLE and s.status == "online"
        }
        if not sensors:
            return self.async_abort(reason="no_calibratable_sensor")
        errors: dict[str, str] = {}
        if user_input is not None:
            self._sensor, self._label = user_input["sensor"], sensors[user_input["sensor"]]
            try:
                self._session = await self._client.start_calibration(self._sensor)
            except BioreactorRequestError as err:
                errors["base"] = _error_key(err)
            except BioreactorError:
                errors["base"] = "cannot_connect"
            else:
                return await self._point(None)
        schema = vol.Schema(
            {
                vol.Required("sensor"): SelectSelector(
                    SelectSelectorConfig(
                        options=[SelectOptionDict(value=k, label=v) for k, v in sensors.items()]
                    )
                )
            }
        )
        return self.async_show_form(step_id="calibrate", data_schema=schema, errors=errors)

    # One step per point, so each shows its own instructions (translations).
    async def async_step_ph_mid(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_ph_low(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_ph_high(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_do_atmospheric(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_do_zero(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_ec_dry(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_ec_low(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        return await self._point(user_input)

    async def async_step_ec_high(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return await self._point(user_input)

    async def _point(self, user_input: dict[str, Any] | None) -> ConfigFlowResult:
        """The next point: instructions, live reading and stability; submit commits it."""
        assert self._session is not None
        point = self._session.next_point
        if point is None:
            return self.async_abort(reason="session_ended")
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                self._session = await self._client.commit_calibration(
                    self._sensor, point, user_input.get("value")
                )
            except BioreactorRequestError as err:
                errors["base"] = _error_key(err)
            except BioreactorError:
                errors["base"] = "cannot_connect"
            else:
                return self._after_commit()
        try:
            self._session = await self._client.calibration(self._sensor)
        except BioreactorError:
            errors.setdefault("base", "cannot_connect")
        session = self._session
        if session.next_point != point:
            return self.async_abort(reason="session_ended")
        fields: dict[Any, Any] = {}
        suggested = session.point_defaults.get(point)
        if suggested is not None:
            fields[vol.Required("value", default=suggested)] = NumberSelector(
                NumberSelectorConfig(
                    min=0,
                    max=500000,
                    step="any",
                    mode=NumberSelectorMode.BOX,
                    unit_of_measurement=session.unit or "",
                )
            )
        return self.async_show_form(
            step_id=f"{session.kind}_{point}",
            data_schema=vol.Schema(fields),
            errors=errors,
            description_placeholders=self._progress(),
        )

    def _after_commit(self) -> ConfigFlowResult:
        session = self._session
        assert session is not None
        if session.next_point is None:
            return self._result()
        return self.async_show_menu(
            step_id="calibrate_next",
            menu_options=[f"{session.kind}_{session.next_point}", "calibrate_finish"],
            description_placeholders=self._progress(),
        )

    async def async_step_calibrate_next(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The menu after a commit: the next point in order, or finishing here."""
        return self._after_commit()

    async def async_step_calibrate_finish(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ends the session early (pH with one or two points); what was committed stays."""
        try:
            self._session = await self._client.cancel_calibration(self._sensor)
        except BioreactorError:
            return self.async_abort(reason="cannot_connect")
        return self._result()

    def _result(self) -> ConfigFlowResult:
        return self.async_show_form(
            step_id="calibrate_result",
            data_schema=vol.Schema({}),
            description_placeholders=self._progress(),
        )

    async def async_step_calibrate_result(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        return self.async_create_entry(data=dict(self.config_entry.options))

    def _progress(self) -> dict[str, str]:
        session = self._session
        assert session is not None
        reading = "—" if session.value is None else f"{session.value:g} {session.unit or ''}"
        result = session.result
        return {
            "sensor": self._label,
            "reading": reading.strip(),
            "readings": str(session.readings),
            "readings_needed": str(session.readings_needed),
            "seconds": f"{session.seconds:.0f}",
            "seconds_needed": f"{session.seconds_needed:g}",
            "committed": ", ".join(c.point for c in session.committed) or "—",
            "points": "—" if result is None else str(result.points),
            "slope": _slope_text(result),
            "date": "—" if result is None else f"{dt_util.as_local(result.date):%Y-%m-%d %H:%M}",
        }


# -- the action -----------------------------------------------------------------------


def _target(hass: HomeAssistant, entity_id: str) -> tuple[BioreactorCoordinator, Sensor]:
    """The coordinator and sensor behind one of the sensor's entities."""
    entity = er.async_get(hass).async_get(entity_id)
    entry = (
        None
        if entity is None or entity.platform != DOMAIN or entity.config_entry_id is None
        else hass.config_entries.async_get_entry(entity.config_entry_id)
    )
    if entity is not None and entry is not None and hasattr(entry, "runtime_data"):
        coordinator: BioreactorCoordinator = entry.runtime_data
        for reactor in coordinator.data.reactors:
            for sensor in reactor.sensors:
                prefix = f"{coordinator.agent_id}_{sensor.id}_"
                if entity.unique_id.startswith(prefix) and sensor.kind in CALIBRATABLE:
                    return coordinator, sensor
    raise ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key="calibration_unknown_sensor",
        translation_placeholders={"entity_id": entity_id},
    )


async def _calibrate(call: ServiceCall) -> ServiceResponse:
    coordinator, sensor = _target(call.hass, call.data["entity_id"])
    point, value = call.data["point"], call.data.get("value")
    client = coordinator.client
    try:
        try:
            session: CalibrationSession | None = await client.calibration(sensor.id)
        except BioreactorRequestError as err:
            if err.status != 404:
                raise
            session = None
        # The first call starts the calibration; the agent then wants a stable reading
        # taken after that, so an immediate commit is refused as not stable yet.
        if session is None or session.state != "active":
            await client.start_calibration(sensor.id)
        session = await client.commit_calibration(sensor.id, point, value)
    except BioreactorRequestError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key=f"calibration_{_error_key(err)}",
            translation_placeholders={"sensor": sensor.id, "point": point, "message": err.message},
        ) from err
    except BioreactorError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_connect",
            translation_placeholders={"error": str(err)},
        ) from err
    await coordinator.async_request_refresh()
    result = session.result
    return {
        "sensor": sensor.id,
        "committed": [c.point for c in session.committed],
        "next_point": session.next_point,
        "points": None if result is None else result.points,
        "slope": None
        if result is None or result.slope is None
        else {
            "acid_pct": result.slope.acid_pct,
            "base_pct": result.slope.base_pct,
            "offset_mv": result.slope.offset_mv,
        },
    }


def async_setup_calibration_service(hass: HomeAssistant) -> None:
    hass.services.async_register(
        DOMAIN,
        SERVICE_CALIBRATE,
        _calibrate,
        schema=CALIBRATE_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


# -- repairs ------------------------------------------------------------------------


def update_calibration_issues(hass: HomeAssistant, coordinator: BioreactorCoordinator) -> None:
    """One issue per sensor whose calibration is older than the interval; gone once
    it is recalibrated (or the sensor is no longer listed)."""
    entry = coordinator.config_entry
    interval = calibration_interval(entry)
    now = dt_util.utcnow()
    prefix = f"{coordinator.agent_id}_calibration_overdue_"
    overdue: dict[str, tuple[Sensor, SensorCalibration]] = {
        s.id: (s, s.calibration)
        for r in coordinator.data.reactors
        for s in r.sensors
        if s.calibration is not None and now - s.calibration.date > interval
    }
    registry = ir.async_get(hass)
    for domain, issue_id in list(registry.issues):
        stale = issue_id.startswith(prefix) and issue_id.removeprefix(prefix) not in overdue
        if domain == DOMAIN and stale:
            ir.async_delete_issue(hass, DOMAIN, issue_id)
    for sensor_id, (sensor, calibration) in overdue.items():
        ir.async_create_issue(
            hass,
            DOMAIN,
            prefix + sensor_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="calibration_overdue",
            translation_placeholders={
                "sensor": _sensor_label(coordinator, sensor),
                "agent": entry.title,
                "date": dt_util.as_local(calibration.date).strftime("%Y-%m-%d"),
                "days": str((now - calibration.date).days),
                "interval": str(interval.days),
            },
        )
