"""The agent: wires buses, discovery, sensor handlers, journal and API together.

It owns the sensor registry: discovery results become handlers (appear),
addresses that stop answering mark their sensor offline (vanish; it stays
listed until forgotten), and addresses nobody can identify are listed as
unknown, with the reason, and asked again on later scans with backoff.
Discovery runs in the background: the API answers from the first second.
HTTP handlers only read what this keeps in memory and the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import __version__
from .actuation_events import ActuationLog
from .actuators import build_actuators, chip_addresses
from .api import SensorInUse, journal_json, journal_problems
from .bus import BusError, BusOwner, RawBus
from .calibration import Calibrator
from .clock_sync import always_synced, mark_unsynced
from .config import AgentConfig, ReactorConfig
from .control.dosing import Input
from .control.runner import Controller
from .discovery import Identification, Place, ScanResult, identify_address, scan_places
from .drivers import create_driver, default_identity
from .drivers.base import DEFAULT_TIMING, Driver, Identity, Timing
from .journal import Journal
from .models import NewReading, Quality, SensorStatus
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
T = TypeVar("T")

API_VERSION = 1
RETENTION_EVERY_S = 60.0
# Control loops tick twice per sampling interval, at least once a second: an
# input going stale or into error reaches the actuators within one interval.
CONTROL_MAX_TICK_S = 1.0
# Reading qualities a loop may act on. Uncompensated pH is off by ~0.003 pH per
# °C per pH unit from 7 (Nernst slope): usable; a suspect reading is not.
CONTROL_QUALITIES = frozenset({Quality.GOOD.value, Quality.UNCOMPENSATED.value})
UNKNOWN_IDENTITY_MODEL = "unidentified"
# An unidentified address is asked again after skipping 0, 1, 3, 7, 15 scans.
MAX_IDENTIFY_SKIP_SCANS = 15


@dataclass(slots=True)
class IdentifyRetry:
    """Backoff of an address that answered but could not be identified."""

    failures: int = 0
    scans_to_skip: int = 0


@dataclass(slots=True)
class Reactor:
    """One reactor: a bus (or a multiplexer channel of one) and its sensors."""

    config: ReactorConfig
    bus: BusOwner
    sensors: dict[str, SensorHandler] = field(default_factory=dict)
    retries: dict[int, IdentifyRetry] = field(default_factory=dict)

    @property
    def place(self) -> Place:
        if self.config.mux_address is None or self.config.mux_channel is None:
            return None
        return (self.config.mux_address, self.config.mux_channel)

    def by_address(self, address: int) -> SensorHandler | None:
        """The handler currently bound to `address` (the newest, if several were seen)."""
        found = [h for h in self.sensors.values() if h.address == address]
        live = [h for h in found if h.status is not SensorStatus.OFFLINE]
        candidates = live or found
        return candidates[-1] if candidates else None

    def temperatures(self) -> list[tuple[LastValue, float]]:
        """The RTD readings compensation may use (the sampler checks quality, range and age)."""
        return [
            (last, handler.interval_s)
            for handler in self.sensors.values()
            if handler.identity.kind == "rtd"
            and handler.status is SensorStatus.ONLINE
            and (last := handler.values.get("temperature")) is not None
        ]


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
        clock_synced: Callable[[], bool] = always_synced,
        on_journaled: Callable[[Sequence[NewReading]], None] | None = None,
    ) -> None:
        self.config = config
        # Readings taken while this says False are journaled with quality `unsynced`.
        self._clock_synced = clock_synced
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
        self._last_scan_ms: int | None = None
        self.control: Controller | None = None
        self._calibration: Calibrator | None = None

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

    @property
    def calibration(self) -> Calibrator:
        if self._calibration is None:
            raise RuntimeError("the agent is not started")
        return self._calibration

    def responsive(self) -> bool:
        """Started, and the control loop ticks: what the systemd watchdog is told."""
        return self.control is not None and not self.control.stalled()

    def status(self) -> dict[str, Any]:
        journal = self.journal.stats()
        problems = journal_problems(journal)
        if not self._clock_synced():
            problems.append("clock_unsynced")
        if any(bus.stats.timeouts for bus in self._buses.values()):
            problems.append("bus_timeouts")
        for reactor in self.reactors.values():
            for handler in reactor.sensors.values():
                if handler.status is SensorStatus.ERROR:
                    problems.append(f"sensor_error:{handler.id}")
                if handler.uncompensated and handler.status is not SensorStatus.OFFLINE:
                    problems.append(f"uncompensated:{handler.id}")
        if self.control is not None:
            problems.extend(self.control.problems())
        return {
            **self.info(),
            "time": iso_ms(int(self._clock() * 1000)),
            "uptime_s": round(self._clock() - self._started_at, 3),
            "health": "degraded" if "journal_unwritable" in problems else "ok",
            "problems": problems,
            "discovery": {
                "state": "running" if self.discovering else "idle",
                "last_scan": iso_ms(self._last_scan_ms),
            },
            "reactors": self._reactors_json(),
            "journal": journal_json(journal),
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

    @property
    def discovering(self) -> bool:
        """A scan runs now, or the first one has not finished yet."""
        first_pending = self.config.discovery.scan and self._last_scan_ms is None
        return self._scan_lock.locked() or (first_pending and bool(self._tasks))

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
            # Forgetting an unknown address also forgets its identification backoff.
            reactor.retries.pop(handler.address, None)
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
        # Calibration commands run in the sensors' own tasks (Sampler.run_job).
        self._calibration = Calibrator(
            self.config.data_dir / "calibration.json",
            self._find_sensor,
            self._run_sensor_job,
            clock=self._clock,
            readings=self.config.calibration.stable_readings,
            seconds=self.config.calibration.stable_seconds,
        )
        self._calibration.load()
        self._sampler = Sampler(
            self._append,
            min_interval_scale=self._timing.read_s / DEFAULT_TIMING.read_s,
            clock=self._clock,
            observe=self._calibration.observe,
            in_calibration=self._calibration.calibrating,
        )
        for config in self.config.reactors:
            if config.bus not in self._buses:
                self._buses[config.bus] = BusOwner(self._raw_bus(config.bus), config.bus)
            bus = self._buses[config.bus]
            if config.mux_address is not None:
                bus.register_mux(config.mux_address)
            self.reactors[config.id] = Reactor(config, bus)
        # Every actuator in its safe state before anything else runs; then the loops'
        # persisted settings are restored (they run without any client connected).
        # Actuation events go through the readings' path (same sequence space, same oracle).
        log = ActuationLog(self._append, self._clock)
        self.control = Controller(
            [
                (
                    r.config,
                    build_actuators(
                        r.config, r.bus, timing=self._timing, clock=self._clock, log=log
                    ),
                )
                for r in self.reactors.values()
            ],
            self._control_input,
            self.config.data_dir / "control.json",
            clock=self._clock,
        )
        await self.control.start()
        for reactor in self.reactors.values():
            for pinned in reactor.config.sensors:
                self._add_sensor(
                    reactor,
                    pinned.address,
                    default_identity(pinned.kind),
                    pinned=True,
                    interval_s=pinned.interval_s,
                )
        # Discovery starts now, in the background: the API serves meanwhile.
        self._tasks = [
            asyncio.create_task(
                self._every(self.config.discovery.interval_s, self.rescan, at_once=True)
            ),
            asyncio.create_task(self._every(RETENTION_EVERY_S, self._journal.enforce_retention)),
            asyncio.create_task(
                self.control.run(min(CONTROL_MAX_TICK_S, self.config.sampling.interval_s / 2))
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._sampler is not None:
            for reactor in self.reactors.values():
                for handler in reactor.sensors.values():
                    await self._sampler.stop(handler)
        if self.control is not None:
            await self.control.stop()
        for bus in self._buses.values():
            await bus.close()
        if self._journal is not None:
            await self._journal.close()

    async def _append(self, readings: Sequence[NewReading]) -> None:
        if not self._clock_synced():
            readings = mark_unsynced(readings)
        on_journaled = self._on_journaled
        if on_journaled is None:  # in production: no extra task on the readings' hot path
            await self.journal.append(readings)
            return
        # The journal finishes a commit whose sampler a stop cancelled; so does its record.
        commit = asyncio.ensure_future(self.journal.append(readings))
        commit.add_done_callback(lambda done: None if done.cancelled() else on_journaled(readings))
        await asyncio.shield(commit)

    async def _every(
        self, period_s: float, job: Callable[[], Any], *, at_once: bool = False
    ) -> None:
        if not at_once:
            await asyncio.sleep(period_s)
        while True:
            try:
                await job()
            except Exception:
                # A periodic job must never stop the agent; the next period retries.
                _LOGGER.exception("periodic %s failed", getattr(job, "__name__", job))
            await asyncio.sleep(period_s)

    # -- discovery ----------------------------------------------------------

    async def rescan(self) -> None:
        """Reconciles every scanned reactor's handlers with what answers on its bus."""
        if not self.config.discovery.scan:
            return
        async with self._scan_lock:
            for bus in self._buses.values():
                reactors = [r for r in self.reactors.values() if r.bus is bus]
                try:
                    results = await scan_places(bus, [r.place for r in reactors])
                    for reactor in reactors:
                        await self._reconcile(reactor, results[reactor.place])
                except BusError as err:
                    # Only a hung bus gets here: the next scan tries again.
                    _LOGGER.warning("scan of bus %d failed: %s", bus.bus_number, err)
            self._last_scan_ms = int(self._clock() * 1000)

    async def _reconcile(self, reactor: Reactor, result: ScanResult) -> None:
        # Relay and PWM chips are the control's: never sent an identification command.
        present = set(result.found) - chip_addresses(reactor.config)
        for handler in list(reactor.sensors.values()):
            if handler.address not in present and not handler.pinned:
                await self._mark_offline(handler)
        for address in list(reactor.retries):
            if address not in present:
                del reactor.retries[address]
        for address in sorted(present):
            bound = reactor.by_address(address)
            if bound is not None and bound.identity.kind != "unknown":
                if bound.status is not SensorStatus.OFFLINE:
                    continue
            elif bound is not None and not self._retry_due(reactor, address):
                continue
            device = reactor.bus.device(
                address,
                mux_address=reactor.config.mux_address,
                mux_channel=reactor.config.mux_channel,
            )
            found = await identify_address(device, timing=self._timing)
            if found.identity is None:
                self._record_unknown(reactor, address, found)
                continue
            reactor.retries.pop(address, None)
            if bound is not None and bound.identity.kind == "unknown":
                del reactor.sensors[bound.id]
            self._add_sensor(reactor, address, found.identity, pinned=False, interval_s=None)

    def _retry_due(self, reactor: Reactor, address: int) -> bool:
        """Whether an unknown address is asked again in this scan (counts skipped scans)."""
        retry = reactor.retries.get(address)
        if retry is None:
            return False
        if retry.scans_to_skip > 0:
            retry.scans_to_skip -= 1
            return False
        return True

    def _record_unknown(self, reactor: Reactor, address: int, found: Identification) -> None:
        if found.retry:
            retry = reactor.retries.setdefault(address, IdentifyRetry())
            retry.failures += 1
            retry.scans_to_skip = min(2 ** (retry.failures - 1) - 1, MAX_IDENTIFY_SKIP_SCANS)
        handler_id = sensor_id(reactor.config.id, "unknown", address)
        handler = reactor.sensors.get(handler_id)
        if handler is None:
            _LOGGER.info(
                "unidentified device at 0x%02x on %s: %s", address, reactor.config.id, found.reason
            )
            handler = SensorHandler(
                handler_id,
                reactor.config.id,
                address,
                Identity(kind="unknown", model=UNKNOWN_IDENTITY_MODEL, firmware=None),
                None,
                interval_s=0.0,
            )
            reactor.sensors[handler_id] = handler
        handler.last_error = found.code
        handler.error_message = found.reason

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

    def _add_sensor(
        self,
        reactor: Reactor,
        address: int,
        identity: Identity,
        *,
        pinned: bool,
        interval_s: float | None,
    ) -> None:
        """Registers a sensor (new or back) and starts its handler; the handler sets the chip up."""
        assert self._sampler is not None
        config = reactor.config
        handler_id = sensor_id(config.id, identity.kind, address)
        handler = reactor.sensors.get(handler_id)
        device = reactor.bus.device(
            address, mux_address=config.mux_address, mux_channel=config.mux_channel
        )
        driver = create_driver(device, identity, timing=self._timing)
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
        handler.begin()
        temperature: TemperatureSource = reactor.temperatures
        self._sampler.start(handler, temperature)

    def _find_sensor(self, sensor_id: str) -> SensorHandler | None:
        for reactor in self.reactors.values():
            if (handler := reactor.sensors.get(sensor_id)) is not None:
                return handler
        return None

    def _run_sensor_job(
        self, handler: SensorHandler, run: Callable[[Driver], Awaitable[T]]
    ) -> Awaitable[T]:
        assert self._sampler is not None
        return self._sampler.run_job(handler, run)

    def _control_input(self, reactor_id: str, kind: str, quantity: str) -> Input | None:
        """The newest reading of `quantity` from the reactor's `kind` sensors, for a loop.

        Good only from an online sensor with no failed attempt since (a loop locks
        out at the first failure, not after the sampler's ERROR_AFTER) and a good
        or merely uncompensated reading; an offline sensor's last value is no
        input at all.
        """
        newest: Input | None = None
        for handler in self.reactors[reactor_id].sensors.values():
            last = handler.values.get(quantity)
            if (
                handler.identity.kind != kind
                or handler.status is SensorStatus.OFFLINE
                or last is None
                or last.value is None
                or last.time_ms is None
            ):
                continue
            good = (
                handler.status is SensorStatus.ONLINE
                and handler.consecutive_errors == 0
                and last.quality in CONTROL_QUALITIES
            )
            candidate = Input(last.value, last.time_ms / 1000, good)
            if newest is None or candidate.time_s > newest.time_s:
                newest = candidate
        return newest

    def _reactors_json(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r.config.id,
                "name": r.config.name,
                "area": r.config.area,
                "bus": r.config.bus,
                "mux_address": r.config.mux_address,
                "mux_channel": r.config.mux_channel,
                "sensors": [
                    {**h.as_json(), "calibration": self.calibration.sensor_json(h.id)}
                    for h in r.sensors.values()
                ],
                **(
                    self.control.reactor_json(r.config.id)
                    if self.control is not None
                    else {"actuators": [], "loops": []}
                ),
            }
            for r in self.reactors.values()
        ]
