"""The API token file and the authentication failure limiter."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bioreactor_edge.auth import (
    MIN_TOKEN_CHARS,
    TOKEN_FILE,
    FailureLimiter,
    TokenError,
    load_or_create_token,
    token_matches,
    valid_token,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_token_created_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = load_or_create_token(data_dir)
    path = data_dir / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert len(token) >= MIN_TOKEN_CHARS >= 43
    assert valid_token(token)
    assert path.read_text(encoding="ascii").strip() == token


def test_same_token_on_second_call(tmp_path: Path) -> None:
    first = load_or_create_token(tmp_path / "d")
    second = load_or_create_token(tmp_path / "d")
    assert first == second


def test_tokens_differ_between_data_dirs(tmp_path: Path) -> None:
    assert load_or_create_token(tmp_path / "a") != load_or_create_token(tmp_path / "b")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610, 0o601])
def test_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    token = load_or_create_token(tmp_path)
    (tmp_path / TOKEN_FILE).chmod(mode)
    with pytest.raises(TokenError, match="chmod 600"):
        load_or_create_token(tmp_path)
    # Refusing does not replace the file.
    assert (tmp_path / TOKEN_FILE).read_text(encoding="ascii").strip() == token


@pytest.mark.parametrize(
    "content",
    [
        "",
        "\n",
        "short",
        "a" * 42,
        "a" * 129,
        "x" * 40 + "!!!!",
        "a" * 43 + " b",
        "ä" * 50,
    ],
)
def test_garbage_token_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_bytes(content.encode("utf-8"))
    path.chmod(0o600)
    with pytest.raises(TokenError, match="valid token"):
        load_or_create_token(tmp_path)


def test_binary_garbage_refused(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_bytes(bytes(range(256)))
    path.chmod(0o600)
    with pytest.raises(TokenError):
        load_or_create_token(tmp_path)


def test_existing_valid_token_accepted(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_text("A" * 43 + "\n", encoding="ascii")
    path.chmod(0o600)
    assert load_or_create_token(tmp_path) == "A" * 43


def test_token_matches() -> None:
    token = "t" * 43
    assert token_matches(token, f"Bearer {token}")
    assert not token_matches(token, None)
    assert not token_matches(token, "")
    assert not token_matches(token, token)
    assert not token_matches(token, f"bearer {token}")
    assert not token_matches(token, f"Basic {token}")
    assert not token_matches(token, f"Bearer {token}x")
    assert not token_matches(token, f"Bearer {token[:-1]}")
    assert not token_matches(token, "Bearer ")
    assert not token_matches(token, f"Bearer  {token}")


def test_limiter_allows_until_limit() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window_s=60, clock=clock)
    assert limiter.retry_after("a") == 0
    for _ in range(2):
        limiter.failed("a")
        assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(60)
    # Other clients are not affected.
    assert limiter.retry_after("b") == 0


def test_limiter_sliding_window() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=3, window_s=60, clock=clock)
    limiter.failed("a")  # t=1000
    clock.now += 10
    limiter.failed("a")  # t=1010
    clock.now += 10
    limiter.failed("a")  # t=1020
    assert limiter.retry_after("a") == pytest.approx(40)
    clock.now = 1059.9
    assert limiter.retry_after("a") == pytest.approx(0.1)
    clock.now = 1060.0
    assert limiter.retry_after("a") == 0  # the first failure left the window
    limiter.failed("a")  # back at the limit: the oldest is now t=1010
    assert limiter.retry_after("a") == pytest.approx(10)
    clock.now = 1200
    assert limiter.retry_after("a") == 0


def test_limiter_bounded_memory() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=2, window_s=60, max_clients=5, clock=clock)
    for i in range(100):
        limiter.failed(f"c{i}")
        limiter.failed(f"c{i}")
    assert len(limiter._failures) <= 5
    # The most recent clients are still limited, the oldest forgotten.
    assert limiter.retry_after("c99") > 0
    assert limiter.retry_after("c0") == 0
    # A single client's history is bounded by the limit.
    for _ in range(1000):
        limiter.failed("c99")
    assert len(limiter._failures["c99"]) == 2


def test_limiter_recent_failure_refreshes_lru() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(limit=1, window_s=60, max_clients=2, clock=clock)
    limiter.failed("a")
    limiter.failed("b")
    limiter.failed("a")  # a is now the most recent
    limiter.failed("c")  # evicts b, not a
    assert limiter.retry_after("a") > 0
    assert limiter.retry_after("b") == 0
    assert limiter.retry_after("c") > 0
