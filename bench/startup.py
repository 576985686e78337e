"""Measure how long the ``gateway`` command and its servers take to start, beside ``python -c pass``.

    .venv/bin/python -m bench.startup            # 5 runs of each, writes JSON
    .venv/bin/python -m bench.startup -n 9 --no-write

Each figure is the median over ``-n`` runs of a fresh process: wall time and CPU time (user + system,
of the process and all its children: a server's policy workers count), so a loaded machine shows in the
wall figure more than in the CPU one.

- ``python -c pass``: the baseline, the interpreter alone, measured in the same run;
- ``import gateway.cli``: what every ``gateway`` command pays before it parses its arguments;
- ``gateway --help``, ``gateway sim-agency --help``: the command line's answer to a user;
- ``gateway token``: a real token from a running gateway (a registered Ed25519 client);
- ``gateway sim-agency`` until its ``/health`` answers 200;
- ``gateway serve`` on a fresh data directory until ``/readyz`` answers 200 (keys made, database
  migrated), and again on the data directory it left (what a restart costs).

Results go to bench/results/startup-<date>.json with the machine's description. Not a test: the numbers
depend on the machine and its load (the load average is recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._machine import REPO_ROOT, describe, write_results
from connectors._wire import HEALTH_PATH

BIN = Path(sys.executable).parent
PYTHON = sys.executable
GATEWAY = str(BIN / "gateway")
READY_GUARD_SECONDS = 120.0
"""A server that is not ready after this long counts as failed: the bench stops rather than hangs."""

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one command run to its end (it must succeed)."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def _stat(pid: int) -> list[str]:
    # After the command name: state is field 3, ppid 4; utime, stime, cutime, cstime are fields 14-17.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a running process so far, with its children's, running (the policy workers) or
    reaped (user + system)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
        todo.extend(parents.get(current, []))
    return total / _CLK_TCK


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _until_ready(argv: Sequence[str], env: dict[str, str], url: str) -> tuple[float, float]:
    """Start a server, poll ``url`` until 200; wall and CPU seconds to that point. The server is stopped."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while _get(url) != 200:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
            if time.perf_counter() - t0 > READY_GUARD_SECONDS:
                raise RuntimeError(f"{url} not ready after {READY_GUARD_SECONDS:.0f} s")
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        cpu = _proc_cpu(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return wall, cpu


def _summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "wall_median_s": round(statistics.median(w for w, _ in samples), 3),
        "cpu_median_s": round(statistics.median(c for _, c in samples), 3),
        "wall_min_s": round(min(w for w, _ in samples), 3),
    }


def measure_token(
    scratch: Path, env: dict[str, str], measure: Callable[[str, Callable[[int], tuple[float, float]]], None]
) -> None:
    """``gateway token`` against one running gateway, with a registered client."""
    data = scratch / "token"
    token_env = {**env, "GATEWAY_DATA_DIR": str(data)}
    key = scratch / "client"
    subprocess.run([GATEWAY, "clients", "keygen", str(key)], env=token_env, check=True, capture_output=True)
    subprocess.run(
        [
            GATEWAY,
            "clients",
            "register",
            "--client-id",
            "bench-politie",
            "--agency",
            "politie",
            "--role",
            "agency_system",
            "--public-key",
            f"{key}.pub.pem",
        ],
        env=token_env,
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [GATEWAY, "serve", "--port", str(port)],
        env=token_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        while _get(f"http://127.0.0.1:{port}/readyz") != 200:
            if server.poll() is not None or time.perf_counter() - t0 > READY_GUARD_SECONDS:
                raise RuntimeError("the gateway for the token runs did not start")
            time.sleep(0.05)
        token_cmd = [GATEWAY, "token", "--client-id", "bench-politie", "--key", f"{key}.key.pem"]
        measure("gateway token (running gateway)", lambda _i: _run(token_cmd, token_env))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5, help="runs of each measurement (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no results file")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="measure only the figures whose name holds this (repeatable)",
    )
    args = parser.parse_args(argv)
    n = max(1, min(args.n, 50))
    load_before = [round(x, 2) for x in os.getloadavg()]

    scratch = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_CONNECTORS"] = "simulated"
    figures: list[dict[str, Any]] = []

    def measure(name: str, one: Callable[[int], tuple[float, float]]) -> None:
        if args.only and figures and not any(part in name for part in args.only):
            return  # the baseline (the first figure) is always measured
        samples = [one(i) for i in range(n)]
        row = {"name": name, **_summary(samples), "runs": n}
        figures.append(row)
        print(f"{name:<44} wall {row['wall_median_s']:7.3f} s   cpu {row['cpu_median_s']:7.3f} s", flush=True)

    try:
        measure("python -c pass (baseline)", lambda _i: _run([PYTHON, "-c", "pass"], env))
        measure("python -c 'import gateway.cli'", lambda _i: _run([PYTHON, "-c", "import gateway.cli"], env))
        measure("gateway --help", lambda _i: _run([GATEWAY, "--help"], env))
        measure("gateway sim-agency --help", lambda _i: _run([GATEWAY, "sim-agency", "--help"], env))

        def fresh_serve(i: int) -> tuple[float, float]:
            port = _free_port()
            data = scratch / f"serve-{i}"
            run_env = {**env, "GATEWAY_DATA_DIR": str(data)}
            cmd = [GATEWAY, "serve", "--port", str(port)]
            return _until_ready(cmd, run_env, f"http://127.0.0.1:{port}/readyz")

        def restart_serve(i: int) -> tuple[float, float]:
            port = _free_port()
            run_env = {**env, "GATEWAY_DATA_DIR": str(scratch / f"serve-{i}")}
            cmd = [GATEWAY, "serve", "--port", str(port)]
            return _until_ready(cmd, run_env, f"http://127.0.0.1:{port}/readyz")

        measure("gateway serve, fresh data dir -> /readyz 200", fresh_serve)
        measure("gateway serve, same data dir -> /readyz 200", restart_serve)

        def sim_agency(i: int) -> tuple[float, float]:
            port = _free_port()
            cmd = [GATEWAY, "sim-agency", "--agency", "politie", "--port", str(port)]
            cmd += ["--data-dir", str(scratch / f"sim-{i}")]
            return _until_ready(cmd, env, f"http://127.0.0.1:{port}{HEALTH_PATH}")

        measure("gateway sim-agency -> health 200", sim_agency)

        if not args.only or any(part in "gateway token" for part in args.only):
            measure_token(scratch, env, measure)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    machine = describe(["typer", "fastapi", "sqlalchemy", "alembic", "uvicorn", "regopy"])
    machine["loadAverage"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    result = {
        "bench": "startup",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {"runs": n, "connectors": "simulated", "database": "SQLite (the default)"},
        "baseline": "python -c pass",
        "figures": figures,
    }
    if not args.no_write:
        out = write_results("startup", result)
        print(f"wrote {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
