"""The machine and the code a benchmark measured, for its results file: one description for every bench."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def describe(packages: Iterable[str] = ()) -> dict[str, Any]:
    """CPU model, cores, memory, kernel, Python, the named packages' versions, the git commit, the load."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--", "gateway", "audit", "connectors", "policies", "bench")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "gitCommit": _git("rev-parse", "HEAD") or "unknown",
        "gitDirty": status is None or bool(status),
        "loadAverage": [round(x, 2) for x in os.getloadavg()],
    }


RESULTS = REPO_ROOT / "bench" / "results"


def write_results(stem: str, document: Any, *, suffix: str = "", indent: int = 1) -> Path:
    """Write ``document`` to ``bench/results/<stem>-<date><suffix>.json`` and return the path; an earlier
    run of the same day stays as it was (this one then gets ``<stem>-<date>-<HHMM><suffix>.json``)."""
    import datetime as dt
    import json

    now = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stem}-{now.date().isoformat()}{suffix}.json"
    if out.exists():
        out = RESULTS / f"{stem}-{now.strftime('%Y-%m-%d-%H%M')}{suffix}.json"
    out.write_text(json.dumps(document, indent=indent) + "\n", encoding="utf-8")
    return out
