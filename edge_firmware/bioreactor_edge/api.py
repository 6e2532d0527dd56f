"""The agent's HTTP API (docs/api.md; machine-readable in openapi.json).

Handlers never touch the bus: they read what the agent keeps in memory and the
journal. Every input is validated before anything changes; bad input gets a 4xx
JSON error naming the problem, and no path turns bad input into a 5xx.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from .auth import FailureLimiter, token_matches
from .calibration import CalibrationInvalid, CalibrationRefused, Calibrator
from .control.runner import Controller
from .control_api import add_control_routes
from .journal import (
    DEFAULT_CONSUMER,
    AckBeyondNewest,
    EpochMismatch,
    Journal,
    JournalStats,
    JournalUnavailable,
    TooManyConsumers,
    UnknownConsumer,
)
from .journal_lineage import Ancestor
from .models import Reading
from .timefmt import iso_ms

_LOGGER = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
PUBLIC_PATHS = frozenset({f"{API_PREFIX}/info", f"{API_PREFIX}/openapi.json"})
DEFAULT_LIMIT = 1000
_EPOCH_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONSUMER_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A journal that cannot be read or written right now (full disk, I/O error): try again soon.
RETRY_AFTER_UNAVAILABLE_S = 5
_MAX_SEQ = (1 << 63) - 1
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    503: "journal_unavailable",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SensorInUse(Exception):
    """A sensor that is online or in error cannot be forgotten."""


class AgentBackend(Protocol):
    """What the API needs from the agent."""

    @property
    def agent_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def journal(self) -> Journal: ...
    def info(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    async def scan(self) -> dict[str, Any]: ...
    def forget_sensor(self, sensor_id: str) -> None: ...
    @property
    def control(self) -> Controller | None: ...
    @property
    def calibration(self) -> Calibrator: ...


class ApiError(Exception):
    """Answered as `{"error": code, "message": message}` with `status`."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _consumer(value: object, where: str) -> str:
    if not isinstance(value, str) or not _CONSUMER_PATTERN.match(value):
        raise _bad_request(f"{where} must be 1-64 letters, digits, '-' or '_'")
    return value


def lineage_json(lineage: tuple[Ancestor, ...]) -> list[dict[str, Any]]:
    """An epoch's ancestors as served in /readings and /status (docs/api.md)."""
    return [{"epoch": a.epoch, "through_seq": a.through_seq} for a in lineage]


def journal_json(stats: JournalStats) -> dict[str, Any]:
    """The `journal` block of /status (docs/api.md)."""
    return {
        "epoch": stats.epoch,
        "newest_seq": stats.newest_seq,
        "acked_seq": stats.acked_seq,
        "pending": stats.pending,
        "bytes": stats.bytes,
        "budget_bytes": stats.budget_bytes,
        "retention_days": stats.retention_days,
        "dropped": stats.dropped,
        "dropped_by_cause": stats.dropped_by_cause,
        "writable": stats.writable,
        "lineage": lineage_json(stats.lineage),
    }


def journal_problems(stats: JournalStats) -> list[str]:
    """The journal's entries of /status `problems`."""
    problems = []
    if not stats.writable:
        problems.append("journal_unwritable")
    if stats.dropped:
        problems.append("journal_dropping")
    if stats.new_epoch_unacked:
        # Until a consumer acknowledges in the new epoch: it has noticed the change.
        problems.append("journal_new_epoch")
    return problems


def _query_int(request: web.Request, name: str, default: int, minimum: int) -> int:
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1:
        raise _bad_request(f"query parameter {name!r} given more than once")
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _bad_request(f"query parameter {name!r} must be a non-negative integer")
    value = int(text)
    if value < minimum or value > _MAX_SEQ:
        raise _bad_request(f"query parameter {name!r} must be at least {minimum}")
    return value


async def _json_object(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad_request("the body must be a JSON object")
    return body


def _readings_body(agent_id: str, stats: JournalStats, more: bool, readings: list[Reading]) -> str:
    # Pages hold up to 10,000 readings: readings of one tick share a timestamp, so
    # each distinct time is formatted once.
    times: dict[int, str | None] = {}
    items = []
    for r in readings:
        stamp = times.get(r.time_ms)
        if stamp is None:
            stamp = times[r.time_ms] = iso_ms(r.time_ms)
        item = {
            "seq": r.seq,
            "time": stamp,
            "reactor": r.reactor,
            "sensor": r.sensor,
            "quantity": r.quantity,
            "value": r.value,
            "unit": r.unit,
            "quality": r.quality,
        }
        if r.event is not None:  # an actuation event (actuation_events.py)
            item["event"] = json.loads(r.event)
        items.append(item)
    return json.dumps(
        {
            "agent_id": agent_id,
            "epoch": stats.epoch,
            "newest_seq": stats.newest_seq,
            "lineage": lineage_json(stats.lineage),
            "more": more,
            "readings": items,
        },
        ensure_ascii=False,
        allow_nan=False,
    )


class _Routes:
    def __init__(self, backend: AgentBackend, limit_cap: int) -> None:
        self._backend = backend
        self._limit_cap = limit_cap
        self._openapi = resources.files(__package__).joinpath("openapi.json").read_bytes()

    async def info(self, request: web.Request) -> web.Response:
        _no_query(request)
        return web.json_response(self._backend.info())

    async def openapi(self, request: web.Request) -> web.Response:
        _no_query(request)
        return web.Response(body=self._openapi, content_type="application/json")

    async def status(self, request: web.Request) -> web.Response:
        _no_query(request)
        return web.json_response(self._backend.status())

    async def readings(self, request: web.Request) -> web.Response:
        unknown = set(request.query) - {"after", "limit", "consumer"}
        if unknown:
            raise _bad_request(f"unknown query parameter {sorted(unknown)[0]!r}")
        after = _query_int(request, "after", 0, 0)
        limit = min(_query_int(request, "limit", DEFAULT_LIMIT, 1), self._limit_cap)
        consumers = request.query.getall("consumer", [])
        if len(consumers) > 1:
            raise _bad_request("query parameter 'consumer' given more than once")
        consumer = _consumer(consumers[0], "'consumer'") if consumers else None
        journal = self._backend.journal
        try:
            page, more = await journal.read_after(after, limit, consumer)
        except TooManyConsumers as err:
            raise ApiError(409, "conflict", str(err)) from None
        # Read after the page, so newest_seq is never below the page's last seq.
        body = _readings_body(self._backend.agent_id, journal.stats(), more, page)
        return web.Response(text=body, content_type="application/json")

    async def ack(self, request: web.Request) -> web.Response:
        _no_query(request)
        body = await _json_object(request)
        unknown = set(body) - {"epoch", "seq", "consumer"}
        if unknown:
            raise _bad_request(f"unknown field {sorted(unknown)[0]!r}")
        epoch, seq = body.get("epoch"), body.get("seq")
        if not isinstance(epoch, str) or not _EPOCH_PATTERN.match(epoch):
            raise _bad_request("'epoch' must be the journal epoch string")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= _MAX_SEQ:
            raise _bad_request("'seq' must be a non-negative integer")
        consumer = _consumer(body.get("consumer", DEFAULT_CONSUMER), "'consumer'")
        journal = self._backend.journal
        try:
            acked = await journal.ack(epoch, seq, consumer)
        except EpochMismatch as err:
            raise ApiError(409, "epoch_mismatch", str(err)) from None
        except AckBeyondNewest as err:
            raise _bad_request(str(err)) from None
        except TooManyConsumers as err:
            raise ApiError(409, "conflict", str(err)) from None
        return web.json_response({"epoch": journal.epoch, "acked_seq": acked, "consumer": consumer})

    async def consumers(self, request: web.Request) -> web.Response:
        _no_query(request)
        journal = self._backend.journal
        return web.json_response(
            {
                "epoch": journal.epoch,
                "consumers": [
                    {"id": consumer, "acked_seq": acked}
                    for consumer, acked in journal.consumers().items()
                ],
            }
        )

    async def remove_consumer(self, request: web.Request) -> web.Response:
        _no_query(request)
        consumer = request.match_info["consumer_id"]
        if consumer == DEFAULT_CONSUMER:
            raise ApiError(409, "conflict", "the default consumer cannot be removed")
        try:
            await self._backend.journal.remove_consumer(consumer)
        except UnknownConsumer as err:
            raise ApiError(404, "not_found", str(err)) from None
        return web.json_response({"removed": consumer})

    async def scan(self, request: web.Request) -> web.Response:
        _no_query(request)
        body = await _json_object(request, allow_empty=True)
        if body:
            raise _bad_request(f"unknown field {sorted(body)[0]!r}")
        return web.json_response(await self._backend.scan())

    async def forget(self, request: web.Request) -> web.Response:
        _no_query(request)
        sensor_id = request.match_info["sensor_id"]
        try:
            self._backend.forget_sensor(sensor_id)
        except KeyError:
            raise ApiError(404, "not_found", f"no sensor {sensor_id!r}") from None
        except SensorInUse as err:
            raise ApiError(409, "conflict", str(err)) from None
        return web.json_response({"forgotten": sensor_id})

    # Guided calibration (docs/calibration.md): the agent enforces order and stability.

    async def calibration_start(self, request: web.Request) -> web.Response:
        _no_query(request)
        sensor_id = request.match_info["sensor_id"]
        body = await _json_object(request, allow_empty=True)
        with _calibration_errors(sensor_id):
            return web.json_response(self._backend.calibration.start(sensor_id, body))

    async def calibration_progress(self, request: web.Request) -> web.Response:
        _no_query(request)
        sensor_id = request.match_info["sensor_id"]
        with _calibration_errors(sensor_id, missing_session=404):
            return web.json_response(self._backend.calibration.progress(sensor_id))

    async def calibration_commit(self, request: web.Request) -> web.Response:
        _no_query(request)
        sensor_id = request.match_info["sensor_id"]
        body = await _json_object(request)
        unknown = set(body) - {"point", "value"}
        if unknown:
            raise _bad_request(f"unknown field {sorted(unknown)[0]!r}")
        if "point" not in body:
            raise _bad_request("'point' is required")
        with _calibration_errors(sensor_id):
            result = await self._backend.calibration.commit(
                sensor_id, body["point"], body.get("value")
            )
        return web.json_response(result)

    async def calibration_cancel(self, request: web.Request) -> web.Response:
        _no_query(request)
        sensor_id = request.match_info["sensor_id"]
        with _calibration_errors(sensor_id, missing_session=404):
            return web.json_response(self._backend.calibration.cancel(sensor_id))


@contextmanager
def _calibration_errors(sensor_id: str, *, missing_session: int = 409) -> Iterator[None]:
    """Calibration refusals as API errors: 400 bad input, 404 unknown sensor, 409 state."""
    try:
        yield
    except KeyError:
        raise ApiError(404, "not_found", f"no sensor {sensor_id!r}") from None
    except CalibrationInvalid as err:
        raise _bad_request(str(err)) from None
    except CalibrationRefused as err:
        status = missing_session if err.code == "no_session" else 409
        raise ApiError(status, err.code if status == 409 else "not_found", err.message) from None


def _no_query(request: web.Request) -> None:
    if request.query:
        raise _bad_request(f"unknown query parameter {sorted(request.query)[0]!r}")


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def create_app(
    backend: AgentBackend,
    token: str,
    *,
    max_body_bytes: int = 4096,
    readings_limit_cap: int = 10_000,
    limiter: FailureLimiter | None = None,
) -> web.Application:
    """The API application for `backend`, guarded by `token`."""
    failures = limiter or FailureLimiter()

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return error_response(err.status, err.code, err.message, **err.headers)
        except JournalUnavailable as err:
            # Not the client's fault and not for ever: a full disk or an I/O error.
            return error_response(
                503,
                "journal_unavailable",
                str(err),
                **{"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)},
            )
        except web.HTTPException as err:
            if err.status < 400:
                raise
            code = _STATUS_CODES.get(err.status, "bad_request")
            status = err.status if err.status in _STATUS_CODES else 400
            # 405 must keep its Allow header (RFC 9110).
            kept = {k: v for k, v in err.headers.items() if k == "Allow"}
            return error_response(status, code, err.reason, **kept)
        except Exception:
            # Never a traceback to the client; the log has it.
            _LOGGER.exception("unexpected error serving %s %s", request.method, request.path)
            return error_response(500, "internal_error", "the agent failed to answer; see its log")

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        if {"token", "access_token"} & set(request.query):
            raise _bad_request("tokens are accepted only in the Authorization header")
        # The token is checked first: a client presenting the right token is never
        # limited, even when others behind the same address (a NAT, Home Assistant's
        # host) keep failing. With 256-bit tokens the limiter guards against noise and
        # load, not guessing, so it need not hide whether a token is right.
        if not token_matches(token, request.headers.get("Authorization")):
            client = _client(request)
            wait = failures.retry_after(client)
            if wait > 0:
                return error_response(
                    429,
                    "rate_limited",
                    "too many failed authentications; try again later",
                    **{"Retry-After": str(max(1, math.ceil(wait)))},
                )
            failures.failed(client)
            return error_response(
                401,
                "unauthorized",
                "missing or wrong bearer token",
                **{"WWW-Authenticate": 'Bearer realm="bioreactor-edge"'},
            )
        if request.content_length is not None and request.content_length > max_body_bytes:
            raise ApiError(
                413, "payload_too_large", f"bodies are limited to {max_body_bytes} bytes"
            )
        return await handler(request)

    app = web.Application(middlewares=[errors, authenticate], client_max_size=max_body_bytes)
    routes = _Routes(backend, readings_limit_cap)
    app.router.add_get(f"{API_PREFIX}/info", routes.info, allow_head=False)
    app.router.add_get(f"{API_PREFIX}/openapi.json", routes.openapi, allow_head=False)
    app.router.add_get(f"{API_PREFIX}/status", routes.status, allow_head=False)
    app.router.add_get(f"{API_PREFIX}/readings", routes.readings, allow_head=False)
    app.router.add_post(f"{API_PREFIX}/ack", routes.ack)
    app.router.add_post(f"{API_PREFIX}/scan", routes.scan)
    app.router.add_delete(API_PREFIX + "/sensors/{sensor_id}", routes.forget)
    add_control_routes(app, backend)
    calibration = API_PREFIX + "/sensors/{sensor_id}/calibration"
    app.router.add_post(calibration, routes.calibration_start)
    app.router.add_get(calibration, routes.calibration_progress, allow_head=False)
    app.router.add_delete(calibration, routes.calibration_cancel)
    app.router.add_post(calibration + "/commit", routes.calibration_commit)
    app.router.add_get(f"{API_PREFIX}/consumers", routes.consumers, allow_head=False)
    app.router.add_delete(API_PREFIX + "/consumers/{consumer_id}", routes.remove_consumer)
    return app
