"""Rate limits (DESIGN.md section 7), counted by the ``limits`` library in memory or in Redis.

Two kinds of budget:

- **per client**, on every authenticated route: ``GATEWAY_RATE_LIMIT`` (``50/second``) with a burst of
  ``GATEWAY_RATE_BURST`` (unset: twice the rate's amount, so 100). ``limits`` has no token bucket, so
  "R a second with a burst of B" is a *moving window* of B calls per B/R seconds (rounded to whole
  seconds, at least one): the same long-run rate R, and a client that was quiet for that long may make B
  calls at once. A moving window keeps the time of each call, so there is no window edge at which a
  client gets twice its budget, as a fixed window would allow; it costs at most B timestamps per client.
- **failed client authentications** at the token endpoint, per claimed client id and per source
  address (``GATEWAY_AUTH_FAILURES_PER_CLIENT``, ``..._PER_ADDRESS``; ``10/minute`` each). They are
  *checked* before the assertion is verified, so past the budget no signature is verified at all, and
  *counted* only when the client authentication failed, so successful logins never use them up.

``GATEWAY_RATE_LIMIT_STORAGE`` is ``memory://`` (one process) or ``redis://...`` (shared by replicas).
When the storage cannot be reached the limiter fails closed: ``RateLimiterUnavailable``, a 503 with
``Retry-After``, rather than serving without limits.

For ``memory://`` the windows are counted here (``InProcessWindows``), by the same rule as the
``limits`` library's moving window, with a deque of call times per key behind one lock: a few
microseconds a call, where ``limits``' memory storage takes tens and starts a timer thread every 10 ms
to expire entries. Redis goes through ``limits``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

import limits
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from gateway.errors import DependencyUnavailable, GatewayError
from gateway.settings import Settings

log = logging.getLogger(__name__)

#: What a refusal is counted as (the ``limit`` label of ``gateway_rate_limited_total``).
LimitKind = Literal["client", "token_client", "token_address"]

#: Seconds a caller is told to wait when the limiter's storage is down.
UNAVAILABLE_RETRY_AFTER: Final = 5

#: Seconds to wait for Redis to connect or answer: a slow Redis is a 503, not a hung request.
REDIS_TIMEOUT: Final = 2.0


class RateLimited(GatewayError):
    """A rate limit is used up; ``Retry-After`` says when the next call can succeed."""

    status = 429
    title = "Too many requests"
    type_ = "https://veilig-delen.example/problems/rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class RateLimiterUnavailable(DependencyUnavailable):
    """The rate limiter's storage cannot be reached; fail closed rather than serve without limits."""

    status = 503
    title = "Rate limiter unavailable"
    type_ = "https://veilig-delen.example/problems/rate-limiter-unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the rate limiter's storage cannot be reached; nothing was done",
            retry_after=UNAVAILABLE_RETRY_AFTER,
        )


def burst_window(rate: limits.RateLimitItem, burst: int | None) -> limits.RateLimitItem:
    """The moving window for ``rate`` with ``burst``: ``burst`` calls per ``burst / rate`` seconds."""
    burst = burst or 2 * rate.amount
    seconds = max(1, round(burst * rate.get_expiry() / rate.amount))
    return limits.RateLimitItemPerSecond(burst, seconds)


#: Seconds between two sweeps of ``InProcessWindows`` for keys whose window has emptied.
SWEEP_INTERVAL: Final = 30.0


class InProcessWindows:
    """Moving windows in this process: the three calls of ``MovingWindowRateLimiter`` the gateway makes.

    A key keeps the times of its calls within the window, newest last. ``hit`` admits a call when fewer
    than ``item.amount`` calls lie within the last ``item.get_expiry()`` seconds, and records it;
    ``test`` says whether it would; ``get_window_stats`` gives the time the oldest call leaves the
    window and the calls left. Keys whose window has emptied are swept out now and then, so the memory
    is bounded by the callers active in the last window.
    """

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, deque[float]]] = {}  # key -> (its expiry, call times)
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    def _window(self, item: limits.RateLimitItem, identifiers: tuple[str, ...], now: float) -> deque[float]:
        key = item.key_for(*identifiers)
        expiry = item.get_expiry()
        held = self._windows.get(key)
        if held is None:
            held = self._windows[key] = (expiry, deque())
        window = held[1]
        start = now - expiry
        while window and window[0] < start:  # a call exactly ``expiry`` ago still counts, as in limits
            window.popleft()
        return window

    def hit(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        now = time.time()
        with self._lock:
            self._sweep_if_due()
            window = self._window(item, identifiers, now)
            if len(window) >= item.amount:
                return False
            window.append(now)
            return True

    def test(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        with self._lock:
            return len(self._window(item, identifiers, time.time())) < item.amount

    def get_window_stats(self, item: limits.RateLimitItem, *identifiers: str) -> WindowStats:
        now = time.time()
        with self._lock:
            window = self._window(item, identifiers, now)
            reset = (window[0] if window else now) + item.get_expiry()
            return WindowStats(reset, item.amount - len(window))

    def _sweep_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        wall = time.time()
        for key in [k for k, (expiry, w) in self._windows.items() if not w or w[-1] < wall - expiry]:
            del self._windows[key]


def _key(value: str) -> str:
    # Client ids and addresses reach the token endpoint unverified: a fixed-size digest keeps the
    # storage keys small and free of anything an attacker chose.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RateLimits:
    """The gateway's rate limits over one ``limits`` storage."""

    def __init__(self, settings: Settings, on_refusal: Callable[[LimitKind], None] | None = None) -> None:
        uri = settings.rate_limit_storage
        self._limiter: MovingWindowRateLimiter | InProcessWindows
        if uri.startswith("memory://"):
            self._storage = None
            self._limiter = InProcessWindows()
        else:
            options: dict[str, float | str | bool] = {}
            if uri.startswith(("redis://", "rediss://", "redis+unix://")):
                options = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
            self._storage = storage_from_string(uri, wrap_exceptions=True, **options)
            self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_client = burst_window(limits.parse(settings.rate_limit), settings.rate_burst)
        self._failures_per_client = limits.parse(settings.auth_failures_per_client)
        self._failures_per_address = limits.parse(settings.auth_failures_per_address)
        self._describe_rate = f"{settings.rate_limit} with a burst of {self._per_client.amount}"
        self._describe_client_failures = settings.auth_failures_per_client
        self._describe_address_failures = settings.auth_failures_per_address
        self._on_refusal = on_refusal

    def problem(self) -> str | None:
        """``None`` when the storage answers, else what is wrong (for ``/readyz``)."""
        if self._storage is None:
            return None  # this process's memory
        return None if self._storage.check() else "storage unreachable"

    def admit(self, client_id: str) -> None:
        """Count one call by ``client_id``; ``RateLimited`` when its budget is used up."""
        ids = ("gateway", "client", client_id)
        with _storage_guard():
            admitted = self._limiter.hit(self._per_client, *ids)
        if not admitted:
            detail = f"rate limit {self._describe_rate} exceeded for client {client_id}"
            self._refuse("client", detail, self._per_client, ids)

    def check_token_failures(self, client_id: str | None, address: str | None) -> None:
        """``RateLimited`` if the claimed ``client_id`` or the source ``address`` has failed too often."""
        for budget in self._failure_budgets(client_id, address):
            with _storage_guard():
                left = self._limiter.test(budget.item, *budget.ids)
            if not left:
                detail = f"too many failed client authentications {budget.what}"
                self._refuse(budget.kind, detail, budget.item, budget.ids)

    def record_token_failure(self, client_id: str | None, address: str | None) -> None:
        """Count one failed client authentication against the claimed client id and the address."""
        for budget in self._failure_budgets(client_id, address):
            with _storage_guard():
                self._limiter.hit(budget.item, *budget.ids)

    def _failure_budgets(self, client_id: str | None, address: str | None) -> list[_Budget]:
        budgets = []
        if client_id:
            budgets.append(
                _Budget(
                    "token_client",
                    self._failures_per_client,
                    ("gateway", "token-failures-client", _key(client_id)),
                    f"for this client id ({self._describe_client_failures})",
                )
            )
        budgets.append(
            _Budget(
                "token_address",
                self._failures_per_address,
                ("gateway", "token-failures-address", _key(address or "unknown")),
                f"from this address ({self._describe_address_failures})",
            )
        )
        return budgets

    def _refuse(self, kind: LimitKind, detail: str, item: limits.RateLimitItem, ids: tuple[str, ...]) -> None:
        with _storage_guard():
            stats = self._limiter.get_window_stats(item, *ids)
        # Whole seconds (RFC 9110 Retry-After), rounded up so that a retry at that time is admitted.
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        if self._on_refusal is not None:
            self._on_refusal(kind)
        raise RateLimited(f"{detail}; retry after {retry_after} s", retry_after=retry_after)


@dataclass(frozen=True)
class _Budget:
    kind: LimitKind
    item: limits.RateLimitItem
    ids: tuple[str, ...]
    what: str


@contextmanager
def _storage_guard() -> Iterator[None]:
    """Turn a storage fault into ``RateLimiterUnavailable``: fail closed, never unlimited."""
    try:
        yield
    except StorageError as e:
        log.error("rate limiter storage unavailable: %s", type(e.storage_error).__name__)
        raise RateLimiterUnavailable() from e
