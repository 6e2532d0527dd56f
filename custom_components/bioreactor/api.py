"""Asynchronous client for the bioreactor edge agent's HTTP API (docs/api.md).

Free of Home Assistant imports so it can become a library of its own. The token
travels only in the Authorization header and is never logged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

T = TypeVar("T")


class BioreactorError(Exception):
    """Base of every error of this client."""


class BioreactorConnectionError(BioreactorError):
    """The agent could not be reached or did not answer in time."""


class BioreactorAuthenticationError(BioreactorError):
    """The agent refused the token."""


class BioreactorProtocolError(BioreactorError):
    """The agent answered something this client does not understand."""


class BioreactorRequestError(BioreactorError):
    """The agent refused a request (4xx other than authentication); `code` is its error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


# -- models ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentInfo:
    agent_id: str
    name: str
    firmware_version: str
    api_version: int


@dataclass(frozen=True, slots=True)
class QuantityValue:
    key: str
    unit: str
    resolution: float
    value: float | None
    time: datetime | None
    quality: str | None


@dataclass(frozen=True, slots=True)
class Sensor:
    id: str
    kind: str
    model: str
    firmware: str | None
    address: int
    status: str
    pinned: bool
    last_seen: datetime | None
    consecutive_errors: int
    error_count: int
    last_error: str | None
    interval_s: float
    quantities: tuple[QuantityValue, ...]


@dataclass(frozen=True, slots=True)
class Reactor:
    id: str
    name: str
    bus: int
    mux_address: int | None
    mux_channel: int | None
    sensors: tuple[Sensor, ...]


@dataclass(frozen=True, slots=True)
class JournalStatus:
    epoch: str
    newest_seq: int
    acked_seq: int
    pending: int
    bytes: int
    budget_bytes: int
    retention_days: float
    dropped: int
    writable: bool


@dataclass(frozen=True, slots=True)
class BusStatus:
    bus: int
    transactions_ok: int
    transactions_error: int
    timeouts: int


@dataclass(frozen=True, slots=True)
class AgentStatus:
    info: AgentInfo
    time: datetime
    uptime_s: float
    health: str
    problems: tuple[str, ...]
    reactors: tuple[Reactor, ...]
    journal: JournalStatus
    buses: tuple[BusStatus, ...]


@dataclass(frozen=True, slots=True)
class Reading:
    seq: int
    time: str  # ISO 8601 UTC with milliseconds, exactly as the agent sent it
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    agent_id: str
    epoch: str
    newest_seq: int
    more: bool
    readings: tuple[Reading, ...]


# -- strict parsing ------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object; errors name the field's path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise BioreactorProtocolError(f"{path or 'answer'}: expected an object")
        self._data = data
        self._path = path

    def _get(self, key: str) -> Any:
        if key not in self._data:
            raise BioreactorProtocolError(f"{self._where(key)}: missing")
        return self._data[key]

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _bad(self, key: str, expected: str) -> BioreactorProtocolError:
        return BioreactorProtocolError(f"{self._where(key)}: expected {expected}")

    def string(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def opt_string(self, key: str) -> str | None:
        return None if self._get(key) is None else self.string(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, "an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self._get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._bad(key, "a number")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def time(self, key: str) -> datetime:
        text = self.string(key)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise self._bad(key, "an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise self._bad(key, "a time with a time zone")
        return parsed.astimezone(UTC)

    def opt_time(self, key: str) -> datetime | None:
        return None if self._get(key) is None else self.time(key)

    def items(self, key: str, parse: Callable[[Any, str], T]) -> tuple[T, ...]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return tuple(parse(item, f"{self._where(key)}[{i}]") for i, item in enumerate(value))

    def obj(self, key: str) -> _Fields:
        return _Fields(self._get(key), self._where(key))


def parse_info(data: Any, path: str = "") -> AgentInfo:
    f = _Fields(data, path)
    return AgentInfo(
        f.string("agent_id"),
        f.string("name"),
        f.string("firmware_version"),
        f.integer("api_version"),
    )


def _quantity(data: Any, path: str) -> QuantityValue:
    f = _Fields(data, path)
    return QuantityValue(
        f.string("key"),
        f.string("unit"),
        f.number("resolution"),
        f.opt_number("value"),
        f.opt_time("time"),
        f.opt_string("quality"),
    )


def _sensor(data: Any, path: str) -> Sensor:
    f = _Fields(data, path)
    return Sensor(
        id=f.string("id"),
        kind=f.string("kind"),
        model=f.string("model"),
        firmware=f.opt_string("firmware"),
        address=f.integer("address"),
        status=f.string("status"),
        pinned=f.boolean("pinned"),
        last_seen=f.opt_time("last_seen"),
        consecutive_errors=f.integer("consecutive_errors"),
        error_count=f.integer("error_count"),
        last_error=f.opt_string("last_error"),
        interval_s=f.number("interval_s"),
        quantities=f.items("quantities", _quantity),
    )


def _reactor(data: Any, path: str) -> Reactor:
    f = _Fields(data, path)
    return Reactor(
        f.string("id"),
        f.string("name"),
        f.integer("bus"),
        f.opt_integer("mux_address"),
        f.opt_integer("mux_channel"),
        f.items("sensors", _sensor),
    )


def _bus(data: Any, path: str) -> BusStatus:
    f = _Fields(data, path)
    return BusStatus(
        f.integer("bus"),
        f.integer("transactions_ok"),
        f.integer("transactions_error"),
        f.integer("timeouts"),
    )


def _problem(data: Any, path: str) -> str:
    if not isinstance(data, str):
        raise BioreactorProtocolError(f"{path}: expected a string")
    return data


def parse_reactors(data: Any) -> tuple[Reactor, ...]:
    return _Fields(data, "").items("reactors", _reactor)


def parse_status(data: Any) -> AgentStatus:
    f = _Fields(data, "")
    j = f.obj("journal")
    return AgentStatus(
        info=parse_info(data),
        time=f.time("time"),
        uptime_s=f.number("uptime_s"),
        health=f.string("health"),
        problems=f.items("problems", _problem),
        reactors=f.items("reactors", _reactor),
        journal=JournalStatus(
            j.string("epoch"),
            j.integer("newest_seq"),
            j.integer("acked_seq"),
            j.integer("pending"),
            j.integer("bytes"),
            j.integer("budget_bytes"),
            j.number("retention_days"),
            j.integer("dropped"),
            j.boolean("writable"),
        ),
        buses=f.items("buses", _bus),
    )


def _reading(data: Any, path: str) -> Reading:
    # The hot path of a backlog drain: direct indexing, strict types.
    try:
        seq, time, reactor, sensor = data["seq"], data["time"], data["reactor"], data["sensor"]
        quantity, value, unit, quality = (
            data["quantity"],
            data["value"],
            data["unit"],
            data["quality"],
        )
    except (KeyError, TypeError):
        raise BioreactorProtocolError(f"{path}: not a complete reading") from None
    if (
        type(seq) is not int
        or type(value) not in (int, float)
        or not all(type(x) is str for x in (time, reactor, sensor, quantity, unit, quality))
    ):
        raise BioreactorProtocolError(f"{path}: a field has the wrong type")
    return Reading(seq, time, reactor, sensor, quantity, float(value), unit, quality)


def parse_readings(body: bytes) -> ReadingsPage:
    """Parses a /readings answer; rejects out-of-order or malformed pages."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BioreactorProtocolError("readings: the answer is not JSON") from None
    f = _Fields(data, "")
    page = ReadingsPage(
        f.string("agent_id"),
        f.string("epoch"),
        f.integer("newest_seq"),
        f.boolean("more"),
        f.items("readings", _reading),
    )
    previous = 0
    for reading in page.readings:
        if reading.seq <= previous:
            raise BioreactorProtocolError("readings: sequence numbers are not increasing")
        previous = reading.seq
    return page


# -- client ------------------------------------------------------------------------


class BioreactorClient:
    """One edge agent. The aiohttp session is injected and never closed here."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        session: aiohttp.ClientSession,
        *,
        request_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        bracketed = f"[{host}]" if ":" in host else host
        self._base = f"http://{bracketed}:{port}/api/v1"

    async def _request(self, method: str, path: str, body: Any = None, **params: int) -> bytes:
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.request(
                method,
                self._base + path,
                headers=headers,
                json=body,
                params=params or None,
                timeout=self._timeout,
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise BioreactorConnectionError(
                f"cannot reach the agent at {self.host}:{self.port}: {err or type(err).__name__}"
            ) from err
        if status in (401, 403):
            raise BioreactorAuthenticationError("the agent refused the token")
        if status == 429:
            raise BioreactorAuthenticationError("the agent is rate limiting failed logins")
        if 400 <= status < 500:
            code, message = _error_of(raw)
            raise BioreactorRequestError(status, code, message)
        if status != 200:
            raise BioreactorConnectionError(f"the agent answered HTTP {status}")
        return raw

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        raw = await self._request(method, path, body)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BioreactorProtocolError(f"{path}: the answer is not JSON") from None

    async def info(self) -> AgentInfo:
        return parse_info(await self._json("GET", "/info"))

    async def status(self) -> AgentStatus:
        return parse_status(await self._json("GET", "/status"))

    async def readings(self, after: int, limit: int = 10_000) -> ReadingsPage:
        raw = await self._request("GET", "/readings", after=after, limit=limit)
        # Pages of 10,000 readings are parsed off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, parse_readings, raw)

    async def ack(self, epoch: str, seq: int) -> int:
        data = _Fields(await self._json("POST", "/ack", {"epoch": epoch, "seq": seq}), "")
        return data.integer("acked_seq")

    async def scan(self) -> tuple[Reactor, ...]:
        return parse_reactors(await self._json("POST", "/scan"))

    async def forget_sensor(self, sensor_id: str) -> None:
        await self._json("DELETE", "/sensors/" + quote(sensor_id, safe=""))


def _error_of(raw: bytes) -> tuple[str, str]:
    try:
        data = json.loads(raw)
        return str(data["error"]), str(data["message"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "unknown", raw[:200].decode("utf-8", errors="replace")
