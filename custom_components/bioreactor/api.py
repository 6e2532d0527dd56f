"""Typed async client for a bioreactor edge agent's HTTP API (docs/api.md).

Standalone on purpose: no Home Assistant import, so the contract test and the
next tools can use it as is. Answers are parsed strictly; anything off-contract
raises BioreactorProtocolError naming the field, never a half-filled model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import aiohttp
from yarl import URL

API_PREFIX: Final = "/api/v1"


class BioreactorError(Exception):
    """Base of every error raised by the client."""


class BioreactorConnectionError(BioreactorError):
    """The agent could not be reached or did not answer in time."""


class BioreactorAuthenticationError(BioreactorError):
    """The agent refused the token (401/403)."""


class BioreactorProtocolError(BioreactorError):
    """The agent answered something the contract does not allow."""


class BioreactorRequestError(BioreactorProtocolError):
    """The agent refused the request with a well-formed JSON error.

    `code` is the contract's error code (`epoch_mismatch`, `conflict`, ...), so
    callers can react to the ones they expect and treat the rest as failures.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """`GET /info`: who the agent is."""

    agent_id: str
    name: str
    firmware_version: str
    api_version: int


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """The newest value of one quantity a sensor measures."""

    key: str
    unit: str
    resolution: float
    value: float | None
    time: datetime | None
    quality: str | None


@dataclass(frozen=True, slots=True)
class Sensor:
    """One chip on a reactor's bus."""

    id: str
    kind: str
    model: str | None
    firmware: str | None
    address: int
    status: str
    pinned: bool
    last_seen: datetime | None
    consecutive_errors: int
    error_count: int
    last_error: str | None
    interval_s: float | None
    quantities: tuple[QuantityValue, ...]


@dataclass(frozen=True, slots=True)
class Reactor:
    """One reactor: a bus (or multiplexer channel) and the sensors on it."""

    id: str
    name: str
    bus: int
    mux_address: int | None
    mux_channel: int | None
    sensors: tuple[Sensor, ...]


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """The agent's durable reading journal."""

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
    """Transaction counters of one I2C bus."""

    bus: int
    transactions_ok: int
    transactions_error: int
    timeouts: int


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """`GET /status`: everything the integration shows."""

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
    """One journaled reading; (agent id, epoch, seq) is its identity."""

    seq: int
    time: datetime
    reactor: str
    sensor: str
    quantity: str
    value: float
    unit: str
    quality: str


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    """`GET /readings`: a page of the current epoch's readings."""

    agent_id: str
    epoch: str
    newest_seq: int
    more: bool
    readings: tuple[Reading, ...]


class BioreactorClient:
    """Talks to one agent. The caller owns `session` (HA's shared one)."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        session: aiohttp.ClientSession,
        *,
        request_timeout: float = 10,
    ) -> None:
        self._base = URL.build(scheme="http", host=host, port=port)
        self._token = token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    def __repr__(self) -> str:
        # Spelled out so the token can never reach a log through repr().
        return f"BioreactorClient({self._base})"

    async def info(self) -> AgentInfo:
        """Identify the agent (the only call that needs no token)."""
        return _info(await self._request("GET", "/info", auth=False), "")

    async def status(self) -> AgentStatus:
        """Current sensors, values, journal and bus counters."""
        return _status(await self._request("GET", "/status"))

    async def readings(self, after: int, limit: int) -> ReadingsPage:
        """Readings of the current epoch with seq > `after`, ascending."""
        data = await self._request(
            "GET", "/readings", params={"after": str(after), "limit": str(limit)}
        )
        return ReadingsPage(
            agent_id=_str(data, "agent_id", ""),
            epoch=_str(data, "epoch", ""),
            newest_seq=_int(data, "newest_seq", ""),
            more=_bool(data, "more", ""),
            readings=_items(data, "readings", "", _reading),
        )

    async def ack(self, epoch: str, seq: int) -> int:
        """Acknowledge readings up to `seq`; returns the agent's watermark."""
        data = await self._request("POST", "/ack", json={"epoch": epoch, "seq": seq})
        if _str(data, "epoch", "") != epoch:
            raise BioreactorProtocolError(f"ack answered for epoch {data['epoch']!r}")
        return _int(data, "acked_seq", "")

    async def scan(self) -> tuple[Reactor, ...]:
        """Rescan every bus now; returns the reactors found."""
        return _items(await self._request("POST", "/scan"), "reactors", "", _reactor)

    async def forget_sensor(self, sensor_id: str) -> None:
        """Make the agent forget an offline or unknown sensor."""
        path = f"/sensors/{sensor_id}"
        data = await self._request("DELETE", path)
        if _str(data, "forgotten", "") != sensor_id:
            raise BioreactorProtocolError(f"forget answered for {data['forgotten']!r}")

    async def _request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        # `%2F` must stay inside a sensor id segment; yarl encodes it when joining.
        url = self._base.with_path(API_PREFIX + path)
        headers = {"Authorization": f"Bearer {self._token}"} if auth else {}
        try:
            async with self._session.request(
                method, url, headers=headers, params=params, json=json, timeout=self._timeout
            ) as response:
                status = response.status
                try:
                    body: Any = await response.json(content_type=None)
                except ValueError as err:
                    raise BioreactorProtocolError(
                        f"{method} {path}: HTTP {status} with a body that is not JSON"
                    ) from err
        except TimeoutError as err:
            raise BioreactorConnectionError(f"{method} {path}: timed out") from err
        except aiohttp.ClientError as err:
            raise BioreactorConnectionError(f"{method} {path}: {err}") from err
        if status in (401, 403):
            raise BioreactorAuthenticationError(f"{method} {path}: HTTP {status}")
        if not isinstance(body, dict):
            raise BioreactorProtocolError(f"{method} {path}: answer is not a JSON object")
        if 400 <= status < 500 and isinstance(body.get("error"), str):
            raise BioreactorRequestError(status, body["error"], str(body.get("message", "")))
        if status != 200:
            raise BioreactorProtocolError(f"{method} {path}: unexpected HTTP {status}")
        return body


# -- strict parsing -------------------------------------------------------------
# `where` is the dotted path of the object being read, so an error names the field.


def _field(data: Mapping[str, Any], key: str, where: str) -> tuple[Any, str]:
    name = f"{where}.{key}" if where else key
    if key not in data:
        raise BioreactorProtocolError(f"missing field {name}")
    return data[key], name


def _wrong(name: str, expected: str, value: Any) -> BioreactorProtocolError:
    return BioreactorProtocolError(f"field {name} must be {expected}, got {value!r}")


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value, name = _field(data, key, where)
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if data.get(key) is None else _str(data, key, where)


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value, name = _field(data, key, where)
    # bool is an int subclass in Python, but never a valid count in JSON.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(name, "an integer", value)
    return value


def _opt_int(data: Mapping[str, Any], key: str, where: str) -> int | None:
    return None if data.get(key) is None else _int(data, key, where)


def _float(data: Mapping[str, Any], key: str, where: str) -> float:
    value, name = _field(data, key, where)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _wrong(name, "a number", value)
    return float(value)


def _opt_float(data: Mapping[str, Any], key: str, where: str) -> float | None:
    return None if data.get(key) is None else _float(data, key, where)


def _bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    value, name = _field(data, key, where)
    if not isinstance(value, bool):
        raise _wrong(name, "true or false", value)
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    text = _str(data, key, where)
    name = f"{where}.{key}" if where else key
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as err:
        raise _wrong(name, "an ISO 8601 time", text) from err
    if parsed.tzinfo is None:
        raise _wrong(name, "a UTC time", text)
    return parsed


def _opt_time(data: Mapping[str, Any], key: str, where: str) -> datetime | None:
    return None if data.get(key) is None else _time(data, key, where)


def _items[T](
    data: Mapping[str, Any], key: str, where: str, parse: Callable[[Any, str], T]
) -> tuple[T, ...]:
    value, name = _field(data, key, where)
    if not isinstance(value, list):
        raise _wrong(name, "a list", value)
    return tuple(parse(item, f"{name}[{index}]") for index, item in enumerate(value))


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(where, "an object", value)
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(where, "a string", value)
    return value


def _info(data: Mapping[str, Any], where: str) -> AgentInfo:
    return AgentInfo(
        agent_id=_str(data, "agent_id", where),
        name=_str(data, "name", where),
        firmware_version=_str(data, "firmware_version", where),
        api_version=_int(data, "api_version", where),
    )


def _quantity(value: Any, where: str) -> QuantityValue:
    data = _object(value, where)
    return QuantityValue(
        key=_str(data, "key", where),
        unit=_str(data, "unit", where),
        resolution=_float(data, "resolution", where),
        value=_opt_float(data, "value", where),
        time=_opt_time(data, "time", where),
        quality=_opt_str(data, "quality", where),
    )


def _sensor(value: Any, where: str) -> Sensor:
    data = _object(value, where)
    return Sensor(
        id=_str(data, "id", where),
        kind=_str(data, "kind", where),
        model=_opt_str(data, "model", where),
        firmware=_opt_str(data, "firmware", where),
        address=_int(data, "address", where),
        status=_str(data, "status", where),
        pinned=_bool(data, "pinned", where),
        last_seen=_opt_time(data, "last_seen", where),
        consecutive_errors=_int(data, "consecutive_errors", where),
        error_count=_int(data, "error_count", where),
        last_error=_opt_str(data, "last_error", where),
        interval_s=_opt_float(data, "interval_s", where),
        quantities=_items(data, "quantities", where, _quantity),
    )


def _reactor(value: Any, where: str) -> Reactor:
    data = _object(value, where)
    return Reactor(
        id=_str(data, "id", where),
        name=_str(data, "name", where),
        bus=_int(data, "bus", where),
        mux_address=_opt_int(data, "mux_address", where),
        mux_channel=_opt_int(data, "mux_channel", where),
        sensors=_items(data, "sensors", where, _sensor),
    )


def _journal(value: Any, where: str) -> JournalStatus:
    data = _object(value, where)
    return JournalStatus(
        epoch=_str(data, "epoch", where),
        newest_seq=_int(data, "newest_seq", where),
        acked_seq=_int(data, "acked_seq", where),
        pending=_int(data, "pending", where),
        bytes=_int(data, "bytes", where),
        budget_bytes=_int(data, "budget_bytes", where),
        retention_days=_float(data, "retention_days", where),
        dropped=_int(data, "dropped", where),
        writable=_bool(data, "writable", where),
    )


def _bus(value: Any, where: str) -> BusStatus:
    data = _object(value, where)
    return BusStatus(
        bus=_int(data, "bus", where),
        transactions_ok=_int(data, "transactions_ok", where),
        transactions_error=_int(data, "transactions_error", where),
        timeouts=_int(data, "timeouts", where),
    )


def _status(data: Mapping[str, Any]) -> AgentStatus:
    return AgentStatus(
        info=_info(data, ""),
        time=_time(data, "time", ""),
        uptime_s=_float(data, "uptime_s", ""),
        health=_str(data, "health", ""),
        problems=_items(data, "problems", "", _text),
        reactors=_items(data, "reactors", "", _reactor),
        journal=_journal(_field(data, "journal", "")[0], "journal"),
        buses=_items(data, "buses", "", _bus),
    )


def _reading(value: Any, where: str) -> Reading:
    data = _object(value, where)
    return Reading(
        seq=_int(data, "seq", where),
        time=_time(data, "time", where),
        reactor=_str(data, "reactor", where),
        sensor=_str(data, "sensor", where),
        quantity=_str(data, "quantity", where),
        value=_float(data, "value", where),
        unit=_str(data, "unit", where),
        quality=_str(data, "quality", where),
    )
