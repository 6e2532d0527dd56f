"""One coordinator per agent: polls /status for live state and repairs.

Live entity state comes from the agent's status (the newest reading of every
quantity). After each poll it starts the agent's delivery (`delivery/`) as a
background task: the exactly-once pipeline into the raw archive, then the
statistics import of complete backlog hours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from pathlib import Path

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey

from .actuations import fire_actuations
from .api import (
    AgentStatus,
    BioreactorAuthenticationError,
    BioreactorCertificateError,
    BioreactorClient,
    BioreactorError,
    BioreactorRateLimitedError,
    BioreactorWrongAgentError,
)
from .const import (
    ARCHIVE_DIR,
    CLOCK_SKEW_LIMIT,
    DOMAIN,
    DRAIN_PAGES_PER_RUN,
    LOGGER,
    MAX_BACKOFF,
    SCAN_INTERVAL,
    SENSOR_ERROR_REPAIR_AFTER,
)
from .delivery.pipeline import Delivery, StorageError
from .delivery.recorder_import import import_due_hours

# Problems of the agent's control that become repair issues (docs/safety.md).
CONTROL_ISSUES = ("actuator_error", "dosing_alarm")

type BioreactorConfigEntry = ConfigEntry[BioreactorCoordinator]

# One lock per agent id for the life of Home Assistant: a reloaded entry's new
# pipeline waits until the old one's storage job has finished.
DELIVERY_LOCKS: HassKey[dict[str, asyncio.Lock]] = HassKey(f"{DOMAIN}_delivery_locks")


class BioreactorCoordinator(DataUpdateCoordinator[AgentStatus]):
    """Polls one agent; owns its delivery pipeline and repairs."""

    config_entry: BioreactorConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: BioreactorConfigEntry, client: BioreactorClient
    ) -> None:
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=SCAN_INTERVAL,
            always_update=False,
        )
        self.client = client
        self.agent_id: str = entry.unique_id or entry.entry_id
        self.archive_dir = Path(hass.config.path(ARCHIVE_DIR))
        self.delivery = Delivery(
            client,
            self.agent_id,
            self.archive_dir / self.agent_id,
            Path(hass.config.path(".storage", f"{DOMAIN}_cursor_{self.agent_id}.json")),
            hass.async_add_executor_job,
            lock=hass.data.setdefault(DELIVERY_LOCKS, {}).setdefault(self.agent_id, asyncio.Lock()),
            now=dt_util.utcnow,
            on_actuations=partial(fire_actuations, hass, entry.entry_id, self.agent_id),
        )
        self._drain: asyncio.Task[None] | None = None
        # Off until the entities exist: backfilled statistics need their entity ids.
        self._delivering = False
        self._error_since: dict[str, datetime] = {}

    async def _async_setup(self) -> None:
        await self.delivery.recover()

    async def _async_update_data(self) -> AgentStatus:
        try:
            status = await self.client.status()
        except BioreactorAuthenticationError as err:
            # Only a 401 to the token we presented: the token itself is wrong.
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except BioreactorRateLimitedError as err:
            # The agent limits HA's address (failed logins from anything behind it):
            # temporary, so the entry stays loaded and polls again when the agent says.
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="rate_limited",
                translation_placeholders={"seconds": f"{err.retry_after:g}"},
                retry_after=err.retry_after,
            ) from err
        except BioreactorError as err:
            if isinstance(err, BioreactorWrongAgentError):
                self._issue("wrong_agent", True, {"host": self.client.host, "other": err.actual})
            if isinstance(err, BioreactorCertificateError):
                # Nothing was sent; only the user can tell a new certificate from an impostor.
                self._issue(
                    "certificate_changed",
                    True,
                    {"host": self.client.host, "pinned": err.expected, "presented": err.actual},
                )
            # Back off: double the interval up to MAX_BACKOFF while the agent is down.
            current = self.update_interval or SCAN_INTERVAL
            self.update_interval = min(current * 2, MAX_BACKOFF)
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err)},
            ) from err
        self.update_interval = SCAN_INTERVAL
        self._issue("wrong_agent", False, {})
        self._issue("certificate_changed", False, {})
        self._update_repairs(status)
        if self._delivering:
            self._start_drain()
        return status

    # -- delivery ----------------------------------------------------------------

    def start_delivery(self) -> None:
        """Starts draining readings (called once the platforms have their entities)."""
        self._delivering = True
        self._start_drain()

    def _start_drain(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = self.config_entry.async_create_background_task(
                self.hass, self._drain_backlog(), f"{DOMAIN} drain {self.agent_id}"
            )

    async def _drain_backlog(self) -> None:
        """Pulls pages until caught up (bounded per run; the next poll continues), then
        imports the backlog hours that are complete."""
        try:
            await self.delivery.drain(DRAIN_PAGES_PER_RUN)
            await import_due_hours(self.hass, self.delivery)
        except StorageError as err:
            LOGGER.warning("delivery from %s paused: %s", self.agent_id, err)
        except BioreactorError as err:
            LOGGER.debug("delivery from %s paused: %s", self.agent_id, err)

    async def async_stop_delivery(self) -> None:
        """Stops delivery and waits until its storage job (if any) has finished."""
        self._delivering = False
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()
            await asyncio.wait([self._drain])

    async def async_shutdown(self) -> None:
        await super().async_shutdown()
        await self.async_stop_delivery()

    # -- repairs -----------------------------------------------------------------

    def _update_repairs(self, status: AgentStatus) -> None:
        now = dt_util.utcnow()
        journal = status.journal
        self._issue(
            "journal_dropping",
            journal.dropped > 0 or status.has_problem("journal_dropping"),
            {"dropped": str(journal.dropped), "causes": _causes(journal.dropped_by_cause)},
        )
        self._update_new_epoch_issue(status)
        self._update_control_issues(status)
        self._issue("clock_unsynced", status.has_problem("clock_unsynced"), {})
        # Under systemd the agent's watchdog restarts it; run any other way, it stays stuck.
        self._issue("control_stalled", status.has_problem("control_stalled"), {})
        skew = abs(status.time - now)
        self._issue(
            "clock_skew",
            skew > CLOCK_SKEW_LIMIT,
            {"seconds": str(round(skew.total_seconds()))},
        )
        in_error = {s.id: s for r in status.reactors for s in r.sensors if s.status == "error"}
        for sensor_id in list(self._error_since):
            if sensor_id not in in_error:
                del self._error_since[sensor_id]
                self._issue(f"sensor_error_{sensor_id}", False, {})
        for sensor_id, sensor in in_error.items():
            since = self._error_since.setdefault(sensor_id, now)
            if now - since >= SENSOR_ERROR_REPAIR_AFTER:
                self._issue(
                    f"sensor_error_{sensor_id}",
                    True,
                    {
                        "sensor": sensor_id,
                        "error": sensor.error_message or sensor.last_error or "?",
                    },
                    translation_key="sensor_error",
                )

    def _update_control_issues(self, status: AgentStatus) -> None:
        """One issue per failing output and per dosing alarm, while the agent reports it:
        the agent already holds the output in its safe state; someone has to look."""
        active = {
            (p.code, p.subject) for p in status.problems if p.code in CONTROL_ISSUES and p.subject
        }
        registry = ir.async_get(self.hass)
        for code in CONTROL_ISSUES:
            prefix = f"{self.agent_id}_{code}_"
            for domain, issue_id in list(registry.issues):
                subject = issue_id.removeprefix(prefix)
                if domain == DOMAIN and subject != issue_id and (code, subject) not in active:
                    ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        for code, subject in active:
            self._issue(f"{code}_{subject}", True, {"subject": subject}, translation_key=code)

    def _update_new_epoch_issue(self, status: AgentStatus) -> None:
        """One issue per epoch the agent started after losing readings.

        It outlives the agent's report of the problem and HA restarts (the loss is a fact
        the user should see; ignoring it is remembered per epoch) and goes once the agent
        has moved on to another epoch.
        """
        epoch = status.journal.epoch
        prefix = f"{self.agent_id}_journal_new_epoch_"
        registry = ir.async_get(self.hass)
        for domain, issue_id in list(registry.issues):
            if domain == DOMAIN and issue_id.startswith(prefix) and issue_id != prefix + epoch:
                ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        if status.has_problem("journal_new_epoch"):
            lost = status.journal.dropped_by_cause.get("recovery")
            self._issue(
                f"journal_new_epoch_{epoch}",
                True,
                {"lost": "?" if lost is None else str(lost), "epoch": epoch},
                translation_key="journal_new_epoch",
                persistent=True,
            )

    def _issue(
        self,
        issue: str,
        active: bool,
        placeholders: dict[str, str],
        *,
        translation_key: str | None = None,
        persistent: bool = False,
    ) -> None:
        issue_id = f"{self.agent_id}_{issue}"
        if not active:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            is_persistent=persistent,
            severity=ir.IssueSeverity.WARNING,
            translation_key=translation_key or issue,
            translation_placeholders={"agent": self.config_entry.title, **placeholders},
        )


def _causes(dropped_by_cause: Mapping[str, int]) -> str:
    """`budget 12, disk_full 3`, largest first; `?` from agents that report only the total."""
    counted = sorted(dropped_by_cause.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{cause} {count}" for cause, count in counted if count) or "?"
