"""The agent: wires buses, discovery, sensor handlers, journal and API together.

It owns the sensor registry: discovery results become handlers (appear),
addresses that stop answering mark their sensor offline (vanish; it stays
listed until forgotten), and addresses nobody can identify are listed as
unknown. HTTP handlers only read what this keeps in memory and the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .api import SensorInUse
from .bus import BusError, BusOwner, RawBus
from .config import AgentConfig, ReactorConfig
from .discovery import identify_address, scan
from .drivers import create_driver, default_identity
from .drivers.base import DEFAULT_TIMING, DriverError, Identity, Timing
from .journal import Journal
from .models import NewReading, SensorStatus
from .sampler import (
    LastValue,
    Sampler,
    SensorHandler,
    TemperatureSource,
    cancel_and_wait,
    sensor_id,
)
from .timefmt import iso_ms

_LOGGER = logging.getLogger(__name__)

API_VERSION = 1
RETENTION_EVERY_S = 60.0
UNKNOWN_IDENTITY_MODEL = "unidentified"


@dataclass(slots=True)
class Reactor:
    """One reactor: a bus (or a multiplexer channel of one) and its sensors."""

    config: ReactorConfig
    bus: BusOwner
    sensors: dict[str, SensorHandler] = field(default_factory=dict)

    def by_address(self, address: int) -> SensorHandler | None:
        """The handler currently bound to `address` (the newest, if several were seen)."""
        found = [h for h in self.sensors.values() if h.address == address]
        live = [h for h in found if h.status is not SensorStatus.OFFLINE]
        candidates = live or found
        return candidates[-1] if candidates else None

    def temperature(self) -> tuple[float, int, float] | None:
        for handler in self.sensors.values():
            last = handler.values.get("temperature")
            if (
                handler.identity.kind == "rtd"
                and handler.status is SensorStatus.ONLINE
                and last is not None
                and last.value is not None
                and last.time_ms is not None
            ):
                return last.value, last.time_ms, handler.interval_s
        return None


class Agent:
    """A complete edge agent for one board (implements the API's AgentBackend)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        agent_id: str,
        raw_bus: Callable[[int], RawBus],
        timing: Timing = DEFAULT_TIMING,
        clock: Callable[[], float] = time.time,
        on_journaled: Callable[[Sequence[NewReading]], None] | None = None,
    ) -> None:
        self.config = config
        self._agent_id = agent_id
        self._raw_bus = raw_bus
        self._timing = timing
        self._clock = clock
        # Told of every batch once it is durable: the simulator's oracle for fault tests.
        self._on_journaled = on_journaled
        self._started_at = clock()
        self._journal: Journal | None = None
        self._buses: dict[int, BusOwner] = {}
        self.reactors: dict[str, Reactor] = {}
        self._sampler: Sampler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_lock = asyncio.Lock()

    # -- AgentBackend -------------------------------------------------------

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the agent is not started")
        return self._journal

    def status(self) -> dict[str, Any]:
        journal = self.journal.stats()
        problems: list[str] = []
        if not journal.writable:
            problems.append("journal_unwritable")
        if journal.dropped:
            problems.append("journal_dropping")
        if any(bus.stats.timeouts for bus in self._buses.values()):
            problems.append("bus_timeouts")
        return {
            **self.info(),
            "time": iso_ms(int(self._clock() * 1000)),
            "uptime_s": round(self._clock() - self._started_at, 3),
            "health": "degraded" if "journal_unwritable" in problems else "ok",
            "problems": problems,
            "reactors": self._reactors_json(),
            "journal": {
                "epoch": journal.epoch,
                "newest_seq": journal.newest_seq,
                "acked_seq": journal.acked_seq,
                "pending": journal.pending,
                "bytes": journal.bytes,
                "budget_bytes": journal.budget_bytes,
                "retention_days": journal.retention_days,
                "dropped": journal.dropped,
                "writable": journal.writable,
            },
            "buses": [
                {
                    "bus": number,
                    "transactions_ok": bus.stats.transactions_ok,
                    "transactions_error": bus.stats.transactions_error,
                    "timeouts": bus.stats.timeouts,
                }
                for number, bus in sorted(self._buses.items())
            ],
        }

    async def scan(self) -> dict[str, Any]:
        await self.rescan()
        return {"reactors": self._reactors_json()}

    def forget_sensor(self, sensor_id: str) -> None:
        for reactor in self.reactors.values():
            handler = reactor.sensors.get(sensor_id)
            if handler is None:
                continue
            if handler.status not in (SensorStatus.OFFLINE, SensorStatus.UNKNOWN):
                raise SensorInUse(f"sensor {sensor_id} is {handler.status.value}")
            del reactor.sensors[sensor_id]
            _LOGGER.info("forgot sensor %s", sensor_id)
            return
        raise KeyError(sensor_id)

    # -- life cycle ---------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "name": self.name,
            "firmware_version": __version__,
            "api_version": API_VERSION,
        }

    async def start(self) -> None:
        journal_config = self.config.journal
        self._journal = await Journal.open(
            self.config.data_dir / "journal",
            retention_s=journal_config.retention_days * 86400,
            budget_bytes=journal_config.budget_mb * 1024 * 1024,
            clock=self._clock,
        )
        if self._journal.recovery.message:
            _LOGGER.warning("journal recovery: %s", self._journal.recovery.message)
        self._sampler = Sampler(
            self._append,
            min_interval_scale=self._timing.read_s / DEFAULT_TIMING.read_s,
            clock=self._clock,
        )
        for config in self.config.reactors:
            if config.bus not in self._buses:
                self._buses[config.bus] = BusOwner(self._raw_bus(config.bus), config.bus)
            self.reactors[config.id] = Reactor(config, self._buses[config.bus])
        for reactor in self.reactors.values():
            for pinned in reactor.config.sensors:
                await self._add_sensor(
                    reactor,
                    pinned.address,
                    default_identity(pinned.kind),
                    pinned=True,
                    interval_s=pinned.interval_s,
                )
        await self.rescan()
        self._tasks = [
            asyncio.create_task(self._every(self.config.discovery.interval_s, self.rescan)),
            asyncio.create_task(self._every(RETENTION_EVERY_S, self._journal.enforce_retention)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._sampler is not None:
            for reactor in self.reactors.values():
                for handler in reactor.sensors.values():
                    await self._sampler.stop(handler)
        for bus in self._buses.values():
            await bus.close()
        if self._journal is not None:
            await self._journal.close()

    async def _append(self, readings: Sequence[NewReading]) -> None:
        await self.journal.append(readings)
        if self._on_journaled is not None:
            self._on_journaled(readings)

    async def _every(self, period_s: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except Exception:
                # A periodic job must never stop the agent; the next period retries.
                _LOGGER.exception("periodic %s failed", getattr(job, "__name__", job))

    # -- discovery ----------------------------------------------------------

    async def rescan(self) -> None:
        """Reconciles every scanned reactor's handlers with what answers on its bus."""
        if not self.config.discovery.scan:
            return
        async with self._scan_lock:
            for reactor in self.reactors.values():
                await self._rescan_reactor(reactor)

    async def _rescan_reactor(self, reactor: Reactor) -> None:
        config = reactor.config
        try:
            present = set(
                await scan(
                    reactor.bus, mux_address=config.mux_address, mux_channel=config.mux_channel
                )
            )
        except BusError as err:
            _LOGGER.warning("scan of reactor %s failed: %s", config.id, err)
            return
        for handler in list(reactor.sensors.values()):
            if handler.address not in present and not handler.pinned:
                await self._mark_offline(handler)
        for address in sorted(present):
            bound = reactor.by_address(address)
            if bound is not None and bound.status is not SensorStatus.OFFLINE:
                continue
            device = reactor.bus.device(
                address, mux_address=config.mux_address, mux_channel=config.mux_channel
            )
            try:
                identity = await identify_address(device, timing=self._timing)
            except (BusError, DriverError) as err:
                _LOGGER.info("could not identify 0x%02x on %s: %s", address, config.id, err)
                continue
            if identity is None:
                identity = Identity(kind="unknown", model=UNKNOWN_IDENTITY_MODEL, firmware=None)
            await self._add_sensor(reactor, address, identity, pinned=False, interval_s=None)

    async def _mark_offline(self, handler: SensorHandler) -> None:
        if handler.status is SensorStatus.OFFLINE:
            return
        if self._sampler is not None:
            await self._sampler.stop(handler)
        if handler.status is not SensorStatus.UNKNOWN:
            _LOGGER.warning("sensor %s vanished from the bus", handler.id)
            handler.status = SensorStatus.OFFLINE
        else:
            del self.reactors[handler.reactor_id].sensors[handler.id]

    async def _add_sensor(
        self,
        reactor: Reactor,
        address: int,
        identity: Identity,
        *,
        pinned: bool,
        interval_s: float | None,
    ) -> None:
        assert self._sampler is not None
        config = reactor.config
        handler_id = sensor_id(config.id, identity.kind, address)
        handler = reactor.sensors.get(handler_id)
        if identity.kind == "unknown":
            if handler is None:
                _LOGGER.info("unidentified device at 0x%02x on %s", address, config.id)
                reactor.sensors[handler_id] = SensorHandler(
                    handler_id,
                    config.id,
                    address,
                    identity,
                    None,
                    interval_s=0.0,
                    pinned=pinned,
                )
            return
        device = reactor.bus.device(
            address, mux_address=config.mux_address, mux_channel=config.mux_channel
        )
        driver = create_driver(device, identity, timing=self._timing)
        try:
            await driver.setup()
        except (BusError, DriverError) as err:
            _LOGGER.warning("setting up %s at 0x%02x failed: %s", identity.kind, address, err)
            if not pinned:
                return
        requested = interval_s or self.config.sampling.interval_s
        interval = self._sampler.effective_interval(driver, requested)
        if handler is None:
            _LOGGER.info(
                "found %s (%s) at 0x%02x on %s", identity.model, identity.kind, address, config.id
            )
            handler = SensorHandler(
                handler_id, config.id, address, identity, driver, interval, pinned=pinned
            )
            reactor.sensors[handler_id] = handler
        else:
            _LOGGER.info("sensor %s is back", handler_id)
            handler.identity, handler.driver, handler.interval_s = identity, driver, interval
        known = handler.values
        handler.values = {q.key: known.get(q.key) or LastValue(q) for q in driver.quantities}
        handler.status = SensorStatus.ONLINE if not pinned else handler.status
        temperature: TemperatureSource = reactor.temperature
        self._sampler.start(handler, temperature)

    def _reactors_json(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r.config.id,
                "name": r.config.name,
                "bus": r.config.bus,
                "mux_address": r.config.mux_address,
                "mux_channel": r.config.mux_channel,
                "sensors": [h.as_json() for h in r.sensors.values()],
            }
            for r in self.reactors.values()
        ]
