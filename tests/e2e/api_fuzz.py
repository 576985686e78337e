"""Fuzz the API against its own OpenAPI document with schemathesis, one run per role.

In the suite at a small size (`tests/e2e/test_openapi_contract.py`); at a large one by
``make fuzz-api`` (``python -m tests.e2e.api_fuzz --max-examples 200``). Each role gets a real token
and the operations of its tags; every check (``--checks all``) must pass: no 5xx, no status, header,
content type or body outside the document, no schema-valid request refused, no invalid one accepted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


@dataclass(frozen=True)
class Role:
    """A client of one role and the operations (by tag) it may call."""

    client_id: str
    agency: str
    role: str
    tags: tuple[str, ...]


ROLES = [
    Role("politie-system", "politie", "agency_system", ("cases", "exchanges")),
    Role("veilig_thuis-fg", "veilig_thuis", "privacy_officer", ("audit",)),
    Role("auditor", "veilig_thuis", "auditor", ("audit",)),
    Role("author", "veilig_thuis", "policy_author", ("policies",)),
    Role("", "", "", ("authentication", "operations")),
]
"""The last one calls without a token: the public routes."""

SUITE_ROLES = [r for r in ROLES if r.role != "auditor"]
"""The roles the suite fuzzes (``make fuzz-api`` fuzzes all of them): the auditor calls the privacy
officer's operations with fewer rights, which tests/e2e/test_audit_api.py checks route by route; fuzzing
them twice costs the suite half a minute."""


def schemathesis_cmd(base: str, token: str | None, tags: tuple[str, ...], max_examples: int) -> list[str]:
    """The schemathesis command line for one role."""
    st = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(st),
        "run",
        f"{base}/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",
        "--seed",
        "20261201",
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "300",
        # `--checks all` includes a response-time check (10 s by default); speed is the benchmarks'
        # business, and a reload on a machine busy with the rest of the suite may take longer.
        "--max-response-time",
        "300",
    ]
    for tag in tags:
        cmd += ["--include-tag", tag]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    return cmd


def run(
    base: str, token: str | None, tags: tuple[str, ...], max_examples: int
) -> subprocess.CompletedProcess[str]:
    """Run schemathesis once; its output is in the result."""
    env = dict(os.environ, SCHEMATHESIS_HOOKS=str(HOOKS), NO_COLOR="1")
    return subprocess.run(
        schemathesis_cmd(base, token, tags, max_examples),
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )


def main() -> int:
    """Start a gateway, register one client per role, and fuzz every role's operations."""
    from gateway.app import create_app
    from tests.e2e.conftest import Gateway, fuzz_settings, start_gateway
    from tests.live import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=200)
    args = parser.parse_args()
    runtime, sock = start_gateway(Path(tempfile.mkdtemp(prefix="vd-fuzz-")), **fuzz_settings())
    failed = 0
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        for role in ROLES:
            token = None
            if role.client_id:
                gw.register(role.client_id, role.agency, role.role)
                token = gw.token(role.client_id)
            result = run(base, token, role.tags, args.max_examples)
            print(f"== {role.role or 'no token'} ({', '.join(role.tags)}): exit {result.returncode}")
            print(result.stdout[-4000:] if result.returncode else result.stdout.splitlines()[-1])
            failed += result.returncode != 0
    runtime.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
