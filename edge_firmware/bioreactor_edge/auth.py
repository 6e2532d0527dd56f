"""The API token and the limiter for repeated authentication failures."""

from __future__ import annotations

import hmac
import re
import secrets
import stat
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

from .durable import create_exclusively

TOKEN_FILE = "token"  # noqa: S105 (a file name, not a secret)
# token_urlsafe(32) is 43 characters of 256 random bits; shorter tokens are refused.
MIN_TOKEN_CHARS = 43
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{43,128}$")


class TokenError(Exception):
    """The token file is unusable; the message says why and what to do."""


def valid_token(token: str) -> bool:
    return bool(_TOKEN_PATTERN.match(token))


def load_or_create_token(data_dir: Path) -> str:
    """The agent's token, created (256 random bits, owner-only file) on first use."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / TOKEN_FILE
    token = secrets.token_urlsafe(32)
    try:
        create_exclusively(path, token + "\n")
    except FileExistsError:
        return _read_token(path)
    return token


def _read_token(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not valid_token(token):
        raise TokenError(f"{path} does not hold a valid token; delete it to create a new one")
    return token


def token_matches(expected: str, header: str | None) -> bool:
    """Checks an `Authorization: Bearer <token>` header in constant time."""
    if header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), expected.encode())


class FailureLimiter:
    """At most `limit` failed authentications per client address in a sliding window.

    Memory is bounded: only the `max_clients` most recently failing addresses are kept.
    """

    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        max_clients: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_s
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        now = self._clock()
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) < self._limit:
            return 0.0
        return failures[0] + self._window - now

    def failed(self, client: str) -> None:
        failures = self._failures.pop(client, None) or deque()
        failures.append(self._clock())
        while len(failures) > self._limit:
            failures.popleft()
        self._failures[client] = failures
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
