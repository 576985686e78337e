"""The in-process moving windows behind ``memory://``: the rule of ``limits``' moving window, cheaper."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import limits
import pytest
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.auth.ratelimit import SWEEP_INTERVAL, InProcessWindows, RateLimited, RateLimits
from gateway.settings import Settings


class Clock:
    """time.time and time.monotonic, moved by the test only."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(time, "time", c.time)
    monkeypatch.setattr(time, "monotonic", c.monotonic)
    return c


def test_the_windows_decide_as_the_limits_library_does(clock: Clock) -> None:
    ours = InProcessWindows()
    storage = MemoryStorage()
    try:
        theirs = MovingWindowRateLimiter(storage)
        items = [limits.RateLimitItemPerSecond(4, 2), limits.RateLimitItemPerMinute(3)]
        rng = random.Random(7)
        for step in range(3000):
            # Never exactly a window's length after a call: there limits itself counts the call as in
            # the window when it admits and as out when it tests, and no real clock lands there.
            clock.now += rng.choice([0.0, rng.uniform(0, 0.5), rng.uniform(0, 3), rng.uniform(0, 20)])
            item = rng.choice(items)
            who = rng.choice(["a", "b"])
            what = rng.random()
            if what < 0.6:
                assert ours.hit(item, "g", who) == theirs.hit(item, "g", who), step
            elif what < 0.8:
                assert ours.test(item, "g", who) == theirs.test(item, "g", who), step
            else:
                mine, lib = ours.get_window_stats(item, "g", who), theirs.get_window_stats(item, "g", who)
                assert mine.remaining == lib.remaining, step
                if lib.remaining == 0:  # when the reset time is used: the Retry-After of a refusal
                    assert mine.reset_time == lib.reset_time, step
    finally:
        storage.timer.cancel()


def test_a_burst_is_admitted_then_refused_until_the_oldest_call_leaves(clock: Clock, tmp_path: Path) -> None:
    rl = RateLimits(Settings(data_dir=tmp_path, rate_limit="2/second", rate_burst=4))  # 4 per 2 s
    for _ in range(4):
        rl.admit("politie-system")
    with pytest.raises(RateLimited) as caught:
        rl.admit("politie-system")
    assert caught.value.headers["Retry-After"] == "2"
    clock.now += 1.0
    with pytest.raises(RateLimited) as caught:
        rl.admit("politie-system")
    assert caught.value.headers["Retry-After"] == "1"
    clock.now += 1.01
    rl.admit("politie-system")


def test_memory_limits_start_no_threads(tmp_path: Path) -> None:
    before = threading.active_count()
    rl = RateLimits(Settings(data_dir=tmp_path, rate_limit="1000/second"))
    for n in range(50):
        rl.admit(f"client-{n % 5}")
        rl.record_token_failure(f"client-{n}", "192.0.2.1")
    assert threading.active_count() == before
    assert rl.problem() is None


def test_emptied_windows_are_swept_and_long_ones_kept(clock: Clock) -> None:
    windows = InProcessWindows()
    second, day = limits.RateLimitItemPerSecond(5), limits.RateLimitItemPerDay(2)
    for n in range(100):
        windows.hit(second, "caller", str(n))
    windows.hit(day, "once")
    windows.hit(day, "once")
    clock.now += SWEEP_INTERVAL + 1
    windows.hit(second, "caller", "new")  # a call after the interval sweeps
    assert set(windows._windows) == {second.key_for("caller", "new"), day.key_for("once")}
    assert windows.hit(day, "once") is False  # the day's two calls still count after the sweep
