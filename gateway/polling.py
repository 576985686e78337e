"""A loop in a daemon thread that calls ``check`` every ``interval`` seconds until `Poller.stop`.

The policy watcher (`gateway.policy.admin`), the policy follower (`gateway.policy.follow`) and the
retention sweeper (`gateway.services.retention`) are such loops: each says what one poll does, this
says how it is started, stopped and kept alive when a poll fails.
"""

from __future__ import annotations

import logging
import random
import threading


class Poller:
    """Subclasses set `thread_name` and implement `check`; a failing poll is logged and the next one runs."""

    thread_name = "poller"
    spread_first = False
    """Wait a random part of the interval before the first poll, so the workers of a replica spread."""
    log_tracebacks = True
    """False where a traceback could quote case data: only the exception's type is logged then."""
    log = logging.getLogger("gateway")

    def __init__(self, *, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> object:
        """One poll."""
        raise NotImplementedError

    def start(self) -> None:
        """Poll in a daemon thread until `stop` (a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling (waits for a poll in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        wait = random.uniform(0, self.interval) if self.spread_first else self.interval  # noqa: S311
        while not self._stop.wait(wait):
            try:
                self.check()
            except Exception as e:  # the loop must outlive any failure: the next poll tries again
                self.log.error(
                    "%s poll failed: %s", self.thread_name, type(e).__name__, exc_info=self.log_tracebacks
                )
            wait = self.interval
