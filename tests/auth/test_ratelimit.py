"""The rate-limit settings and how "R a second with a burst of B" becomes a ``limits`` moving window."""

from __future__ import annotations

import socket
from pathlib import Path

import limits
import pytest
from pydantic import ValidationError

from gateway.auth.ratelimit import RateLimited, RateLimiterUnavailable, RateLimits, burst_window
from gateway.settings import Settings


def test_the_default_is_fifty_a_second_with_a_burst_of_a_hundred() -> None:
    settings = Settings()
    assert settings.rate_limit == "50/second"
    assert settings.rate_limit_storage == "memory://"
    assert settings.auth_failures_per_client == "10/minute"
    assert settings.auth_failures_per_address == "10/minute"
    window = burst_window(limits.parse(settings.rate_limit), settings.rate_burst)
    assert (window.amount, window.get_expiry()) == (100, 2)


@pytest.mark.parametrize(
    ("rate", "burst", "amount", "seconds"),
    [
        ("50/second", 100, 100, 2),
        ("50/second", 50, 50, 1),
        ("5/minute", 5, 5, 60),
        ("5/minute", 10, 10, 120),
        ("100/hour", None, 200, 7200),
        ("50/second", 75, 75, 2),  # 1.5 s rounds to whole seconds
    ],
)
def test_a_burst_is_a_window_of_burst_calls_at_the_same_long_run_rate(
    rate: str, burst: int | None, amount: int, seconds: int
) -> None:
    window = burst_window(limits.parse(rate), burst)
    assert (window.amount, window.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("rate_limit", "lots"),
        ("rate_limit", "50/fortnight"),
        ("auth_failures_per_client", "ten a minute"),
        ("auth_failures_per_address", ""),
        ("rate_limit_storage", "memcached://127.0.0.1:11211"),
        ("rate_limit_storage", "127.0.0.1:6379"),
        ("rate_burst", 0),
    ],
)
def test_bad_rate_settings_refuse_to_start(setting: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(**{setting: value})


def test_a_burst_below_the_rate_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_RATE_BURST"):
        Settings(rate_limit="50/second", rate_burst=10)


def test_each_client_has_its_own_budget_and_refusals_are_counted(tmp_path: Path) -> None:
    refused: list[str] = []
    rl = RateLimits(Settings(data_dir=tmp_path, rate_limit="3/hour", rate_burst=3), on_refusal=refused.append)
    for _ in range(3):
        rl.admit("politie-system")
    with pytest.raises(RateLimited) as caught:
        rl.admit("politie-system")
    assert caught.value.status == 429
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 3600
    assert "3/hour" in caught.value.detail
    rl.admit("om-system")
    assert refused == ["client"]


def test_failures_are_checked_without_being_spent(tmp_path: Path) -> None:
    rl = RateLimits(Settings(data_dir=tmp_path, auth_failures_per_client="2/hour"))
    for _ in range(5):
        rl.check_token_failures("politie-system", "192.0.2.1")  # checking costs nothing
    rl.record_token_failure("politie-system", "192.0.2.1")
    rl.record_token_failure("politie-system", "192.0.2.2")
    with pytest.raises(RateLimited, match="client id"):
        rl.check_token_failures("politie-system", "192.0.2.3")
    rl.check_token_failures("om-system", "192.0.2.1")


def test_the_storage_says_whether_it_answers(tmp_path: Path) -> None:
    assert RateLimits(Settings(data_dir=tmp_path)).problem() is None
    assert (
        RateLimits(Settings(data_dir=tmp_path, rate_limit_storage="redis://127.0.0.1:6379/0")).problem()
        is None
    )
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
        limits_ = RateLimits(Settings(data_dir=tmp_path, rate_limit_storage=dead))
        assert limits_.problem() == "storage unreachable"
        with pytest.raises(RateLimiterUnavailable) as caught:
            limits_.admit("politie-system")
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "5"
