"""Where the gateway's time goes: a py-spy profile (raw, collapsed stacks) summed by component.

    .venv/bin/python -m bench.share_http --profile /tmp/gw     # writes /tmp/gw.txt and prints this
    .venv/bin/python -m bench.profile_breakdown /tmp/gw.txt

py-spy samples only threads that hold the GIL (``--gil``), in the gateway and in its subprocesses (the
policy workers), so the shares are shares of the CPU time the request path spends in Python. A sample
goes to the component of the innermost frame of its stack that names one (``COMPONENTS``; where one
frame names two, the first listed): a database call made by the audit append counts as the audit
append, JSON parsed by the strict body check as that check, and the middleware, which every request's
stack passes through, only for its own frames.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

#: (component, patterns): a sample belongs to the first component with a pattern in its stack.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("policy: evaluation (regopy, worker processes)", ("_worker_main", "regopy")),
    ("policy: the gateway's side (input, IPC, decision)", ("gateway/policy/", "decide (gateway/runtime")),
    ("policy input", ("gateway/services/policy_input",)),
    ("audit append (entries, group commit)", ("audit/", "audit_append", "make_entry")),
    ("deliver (message write, connector push)", ("_deliver", "connectors/")),
    ("case involvement update", ("_involve",)),
    ("case load", ("load (gateway/cases", "load (gateway/services/cases", "visible (gateway/")),
    ("token check (verify, client lookup)", ("gateway/auth/tokens", "gateway/auth/clients", "joserfc/")),
    ("rate limiter", ("gateway/auth/ratelimit", "limits/")),
    ("strict body (size, strict JSON)", ("gateway/api/limits", "gateway/strictjson")),
    ("request validation (pydantic)", ("solve_dependencies", "request_body_to_args", "_validate")),
    ("response serialisation", ("serialize_response", "jsonable_encoder", "render (starlette")),
    ("share handler, other", ("gateway/exchanges", "gateway/services/exchanges", "gateway/trail")),
    ("middleware (conventions, metrics)", ("gateway/api/middleware", "prometheus_client")),
    ("FastAPI/Starlette routing", ("fastapi/", "starlette/")),
    ("HTTP server (uvicorn, h11)", ("uvicorn/", "h11/", "httptools")),
    ("event loop and thread pool", ("asyncio/", "anyio/", "threading", "concurrent/", "selectors")),
]
OTHER = "other"


def component(frames: list[str]) -> str:
    """The component of the innermost frame (frames run from the root to the leaf) that names one."""
    for frame in reversed(frames):
        for name, patterns in COMPONENTS:
            if any(p in frame for p in patterns):
                return name
    return OTHER


def breakdown(text: str) -> tuple[int, dict[str, int]]:
    """Total samples and samples per component of py-spy's raw output."""
    counts: dict[str, int] = {name: 0 for name, _ in COMPONENTS}
    counts[OTHER] = 0
    total = 0
    for line in text.splitlines():
        m = re.match(r"^(.*) (\d+)$", line)
        if not m:
            continue
        stack, n = m[1], int(m[2])
        total += n
        counts[component(stack.split(";"))] += n
    return total, counts


def report(path: Path) -> str:
    total, counts = breakdown(path.read_text())
    lines = [f"{total} samples in {path}"]
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        if n:
            lines.append(f"  {100 * n / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    print(report(parser.parse_args().profile))


if __name__ == "__main__":
    main()
