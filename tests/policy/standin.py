"""Run the STAND-IN for OPA (``standins.opa``) as a separate process for the opa tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.live import free_port

REPO = Path(__file__).resolve().parents[2]

OPA_GO_AVAILABLE = importlib.util.find_spec("opa_bindings") is not None
"""Whether OPA's own Rego engine (opa-golib-python-bindings) is installed for ``--evaluator opa``."""


@dataclass
class StandIn:
    """A running stand-in: its URL, its process and what it logged."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def faults(self, mode: str, delay: float = 0.0) -> None:
        """Make decision queries misbehave (test-only switch of the stand-in)."""
        r = httpx.put(f"{self.url}/_standin/faults", json={"mode": mode, "delay": delay})
        assert r.status_code == 204, r.text

    def policies(self) -> list[dict[str, Any]]:
        """``GET /v1/policies``, result list."""
        return list(httpx.get(f"{self.url}/v1/policies").json()["result"])

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_standin(
    *, policy_dir: Path | None = None, evaluator: str = "regopy", attempts: int = 3
) -> Iterator[StandIn]:
    """Start ``python -m standins.opa`` on a free port; stop it when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "standin.log"
        for attempt in range(attempts):
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "standins.opa",
                "--port",
                str(port),
                "--evaluator",
                evaluator,
                "--enable-fault-injection",
            ]
            if policy_dir is not None:
                cmd += ["--policy-dir", str(policy_dir)]
            with log_path.open("wb") as out:
                process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            if _wait_healthy(url, process):
                break
            process.kill()
            process.wait(timeout=10)
            if attempt == attempts - 1:
                raise RuntimeError(f"the stand-in did not start:\n{log_path.read_text()}")
        try:
            yield StandIn(url, process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # e.g. the port was taken between free_port() and bind
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False
