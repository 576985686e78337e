"""A full verification of the log started from the console: one at a time, in a background thread.

Progress comes from `audit.verify_log`'s progress callback; the outcome of the last run is kept in the
data directory (``console-verification.json``, 0600), so every worker and a restarted gateway show it.
The thread verifies in this process (``workers=1``): the verifier forks worker processes only from a
program without other threads, which a web server is not.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit import verify_log, write_private_file
from gateway.runtime import Runtime

log = logging.getLogger("gateway.console")

RESULT_FILE = "console-verification.json"


@dataclass
class Progress:
    """How far the running verification is."""

    done: int
    total: int

    @property
    def percent(self) -> int:
        """Whole percent done (100 for an empty log)."""
        return 100 if self.total == 0 else min(100, self.done * 100 // self.total)


class Verifications:
    """Starts verifications and knows the running one's progress and the last one's outcome."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        """Where the last outcome is kept."""
        return self._rt.settings.data_dir / RESULT_FILE

    def running(self) -> Progress | None:
        """The running verification's progress, or None when none runs."""
        with self._lock:
            return None if self._progress is None else Progress(self._progress.done, self._progress.total)

    def start(self, started_by: str) -> bool:
        """Start a verification unless one runs; whether this call started it."""
        with self._lock:
            if self._progress is not None:
                return False
            self._progress = Progress(0, self._rt.audit.size())
            self._thread = threading.Thread(
                target=self._run, args=(started_by,), name="console-verify", daemon=True
            )
            self._thread.start()
        return True

    def wait(self, timeout: float) -> bool:
        """Wait for the running verification to end (tests, shutdown); whether it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.running() is None

    def _step(self, done: int) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.done = done

    def _run(self, started_by: str) -> None:
        outcome: dict[str, Any]
        try:
            result = verify_log(
                self._rt.audit, self._rt.audit.verifier_keys(), progress=self._step, workers=1
            )
            outcome = {
                "ok": result.ok,
                "size": result.size,
                "firstBadIndex": result.first_bad_index,
                "reason": result.reason,
            }
        except Exception as e:  # a dead database is an outcome to show, not a crashed thread
            log.error("console verification failed: %s", type(e).__name__)
            outcome = {"ok": False, "size": None, "firstBadIndex": None, "reason": type(e).__name__}
        outcome |= {"time": dt.datetime.now(dt.UTC).isoformat(), "startedBy": started_by}
        try:
            write_private_file(self.path, json.dumps(outcome).encode(), replace=True)
        finally:
            with self._lock:
                self._progress = None
        log.info("console verification ended: %s", "ok" if outcome["ok"] else "problem found")

    def last(self) -> dict[str, Any] | None:
        """The outcome of the last verification, or None."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
