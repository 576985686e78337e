"""Decisions in worker processes: an evaluation past its deadline is killed, never waited out.

regopy cannot be interrupted: a thread that evaluates keeps its interpreter until the evaluation ends,
however long that is. So the embedded engine evaluates in a few child processes, each holding the
compiled bundle of one revision. The parent hands a worker the input as JSON text and waits for the
output text with the deadline; past it, it kills that worker, answers ``engine_timeout`` and starts a
replacement in the background. A stuck evaluation therefore costs one worker for one deadline and the
time a replacement takes to start, and no more.

The protocol is as lean as the decision: one message in (the input, UTF-8 JSON), one out (a tag byte,
``o`` for the output text or ``e`` for a regopy error), over a socket pair with the framing of
`multiprocessing.connection.Connection`. A worker is `gateway.policy._worker_main` run as an isolated
script (``python -I``): it imports only regopy and the standard library, and gets none of the gateway's
settings or secrets. The policy source arrives as its first message, so it compiles what the parent
hashed.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

from gateway.policy._source import ENTRYPOINT, PolicySource

log = logging.getLogger("gateway.policy")

START_TIMEOUT_SECONDS = 60.0
"""How long a new worker may take to start and compile; generous, a busy machine is slow to fork."""
WORKER_SCRIPT = str(Path(__file__).with_name("_worker_main.py"))
# A worker gets only the environment it needs to run Python: none of the gateway's settings or secrets.
_ENV_KEEP = ("PATH", "LD_LIBRARY_PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


class PoolClosed(RuntimeError):
    """The engine was closed: its workers are gone."""


class WorkerFailed(RuntimeError):
    """A worker died or broke the protocol (it is replaced)."""


class WorkerTimeout(TimeoutError):
    """No worker was free in time, or the evaluation passed its deadline (the worker is killed)."""


class EvaluationError(RuntimeError):
    """regopy raised while evaluating; the message is regopy's, never the input."""


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    busy_since: float | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, *, close_conn: bool = True) -> None:
        """Kill and reap: no zombie, no process left running.

        A thread still waiting on the connection closes it itself (it sees the end of the stream):
        closing a descriptor another thread is polling could hand that number to a new file.
        """
        if close_conn:
            self.close_conn()
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=START_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            log.error("policy worker %s did not exit after SIGKILL", self.pid)

    def close_conn(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


def source_message(source: PolicySource) -> bytes:
    """What a worker needs to compile the revision: the entrypoint, the decision modules, the data."""
    return json.dumps(
        {"entrypoint": ENTRYPOINT, "modules": source.policy_modules, "data": source.data},
        ensure_ascii=False,
    ).encode()


def _start(message: bytes) -> _Worker:
    """Start one worker and wait until it has compiled the revision; raises `WorkerFailed`."""
    parent_end, child_end = Pipe(duplex=True)
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env["VEILIGDELEN_POLICY_WORKER_FD"] = str(child_end.fileno())
    env["VEILIGDELEN_POLICY_PARENT"] = str(os.getpid())
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", WORKER_SCRIPT],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
    except OSError as e:
        parent_end.close()
        raise WorkerFailed(f"cannot start a policy worker: {e.strerror or e}") from e
    finally:
        child_end.close()
    worker = _Worker(process, parent_end)
    try:
        parent_end.send_bytes(message)
        if not parent_end.poll(START_TIMEOUT_SECONDS):
            raise WorkerFailed("a policy worker did not start in time")
        reply = parent_end.recv_bytes()
    except (OSError, EOFError, WorkerFailed) as e:
        worker.kill()
        raise WorkerFailed(f"a policy worker failed to start: {type(e).__name__}") from e
    if reply != b"ready":
        worker.kill()
        raise WorkerFailed(
            "a policy worker did not compile the revision: " + reply[1:].decode(errors="replace")
        )
    return worker


class WorkerPool:
    """``size`` workers for one revision; `evaluate` borrows one, and kills it past the deadline."""

    def __init__(self, source: PolicySource, size: int, timeout: float) -> None:
        self._message = source_message(source)
        self.size = size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: set[_Worker] = set()
        self._closed = False
        self._replacers: list[threading.Thread] = []
        self._start_errors: list[BaseException] = []
        # Start them side by side: each compiles on its own core.
        starters = [threading.Thread(target=self._add, args=(True,), daemon=True) for _ in range(size)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        if self._start_errors:
            self.close()
            raise self._start_errors[0]
        # Whatever happens to this object (no close, an exception, interpreter exit), the workers go too.
        self._finalizer = weakref.finalize(self, _kill_all, self._workers)

    def _add(self, initial: bool = False) -> None:
        try:
            worker = _start(self._message)
        except WorkerFailed as e:
            if not initial:
                raise
            with self._lock:  # the constructor raises it, once every starter is done
                self._start_errors.append(e)
            return
        with self._lock:
            if self._closed:
                worker.kill()
                return
            self._workers.add(worker)
        self._idle.put(worker)

    def evaluate(self, term: str) -> tuple[str, str]:
        """``("o", output)`` or ``("e", regopy's message)``; raises `WorkerTimeout`, `WorkerFailed`.

        Waits at most ``timeout`` for a free worker and then at most ``timeout`` for the evaluation, so
        only an evaluation that itself overran is killed, never one that merely queued.
        """
        if self._closed:
            raise PoolClosed("the policy engine is closed")
        # Before a worker is taken: text that is not UTF-8 (a lone surrogate) is the caller's error.
        data = term.encode()
        try:
            worker = self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise WorkerTimeout("no policy worker was free in time") from None
        if self._closed:
            raise PoolClosed("the policy engine is closed")
        worker.busy_since = time.monotonic()
        try:
            worker.conn.send_bytes(data)
            answered = worker.conn.poll(self.timeout)
            reply = worker.conn.recv_bytes() if answered else b""
        except (OSError, EOFError) as e:
            if self._closed:
                worker.close_conn()
                raise PoolClosed("the policy engine is closed") from e
            self._replace(worker, f"it broke off ({type(e).__name__})")
            raise WorkerFailed("a policy worker broke off") from e
        except BaseException:
            # Whatever interrupts the exchange, the worker's state is unknown: never reuse it.
            self._replace(worker, "the exchange was interrupted")
            raise
        if not answered:
            if self._closed:
                worker.close_conn()
                raise PoolClosed("the policy engine is closed")
            self._replace(worker, "its evaluation passed the deadline")
            raise WorkerTimeout("the evaluation passed its deadline")
        worker.busy_since = None
        if self._closed:
            worker.close_conn()  # closed meanwhile: the process is gone, the answer still counts
        else:
            self._idle.put(worker)
        tag, text = reply[:1].decode(errors="replace"), reply[1:].decode(errors="replace")
        if tag not in ("o", "e"):
            raise WorkerFailed("a policy worker answered outside the protocol")
        return tag, text

    def _replace(self, worker: _Worker, why: str) -> None:
        """Kill ``worker`` now and start another in the background (the caller answers at once)."""
        with self._lock:
            self._workers.discard(worker)
            closed = self._closed
        log.error("policy worker %s killed: %s", worker.pid, why)
        worker.kill()
        if not closed:
            t = threading.Thread(target=self._replacement, name="rego-worker-start", daemon=True)
            with self._lock:
                self._replacers = [r for r in self._replacers if r.is_alive()] + [t]
            t.start()

    def _replacement(self) -> None:
        delay = 0.1
        while not self._closed:
            try:
                self._add()
                return
            except WorkerFailed as e:
                # A machine that cannot start a process now may later: health() says stalled meanwhile.
                log.error("policy worker replacement failed, retrying: %s", e)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def health(self) -> str | None:
        """``"stalled"`` when no worker can take a decision now (all busy past the deadline or being
        replaced), ``"closed"`` after `close`; otherwise None."""
        if self._closed:
            return "closed"
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            since = w.busy_since
            if since is None or now - since < self.timeout:
                return None
        return "stalled"

    def pids(self) -> list[int]:
        """The process ids of the live workers (for tests and operators)."""
        with self._lock:
            return sorted(w.pid for w in self._workers)

    def close(self) -> None:
        """Kill every worker and stop replacing them; decisions after this fail closed."""
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
            replacers = list(self._replacers)
        for w in workers:
            w.kill(close_conn=w.busy_since is None)
        for t in replacers:
            t.join(timeout=START_TIMEOUT_SECONDS)


def _kill_all(workers: set[_Worker]) -> None:
    for w in list(workers):
        w.kill(close_conn=w.busy_since is None)
    workers.clear()
