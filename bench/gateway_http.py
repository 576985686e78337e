"""What the gateway adds to a request, measured against a bare FastAPI endpoint in the same run.

    .venv/bin/python -m bench.gateway_http                 # 8 client threads, 400 requests per scenario
    .venv/bin/python -m bench.gateway_http --threads 16 --requests 2000

Both servers run as their own uvicorn processes on loopback; the load comes from client threads with
keep-alive connections in this process. Figures are medians and p99 of per-request latency, and
requests per second over the whole scenario; each gateway figure is printed next to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import generate_keypair, make_client_assertion
from standins.local_server import free_port

PAYLOAD = {
    "datumTijd": "2026-11-28T02:14:00Z",
    "locatie": "Voorbeeldstad",
    "aard": "fysiek geweld",
    "meldingstekst": "x" * 400,
    "interneOpmerking": "niet voor derden",
}


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def load(
    name: str,
    threads: int,
    requests: int,
    make: Callable[[], httpx.Client],
    call: Callable[[httpx.Client], int],
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    per_thread = max(1, requests // threads)

    def worker() -> None:
        nonlocal errors
        mine: list[float] = []
        bad = 0
        with make() as client:
            call(client)  # warm the connection
            for _ in range(per_thread):
                t0 = time.perf_counter()
                status = call(client)
                mine.append(time.perf_counter() - t0)
                bad += status >= 400
        with lock:
            latencies.extend(mine)
            errors += bad

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "name": name,
        "rps": len(latencies) / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            base_port, gw_port = free_port(), free_port()
            procs.append(
                subprocess.Popen([sys.executable, "-m", "bench._baseline_app", "--port", str(base_port)])
            )
            # One client drives the load: a per-client limit far above it keeps the limiter's cost in
            # the figures without its refusals (the default, 50/second, would answer 429 past it).
            env = dict(os.environ, GATEWAY_DATA_DIR=tmp, GATEWAY_PORT=str(gw_port))
            env["GATEWAY_RATE_LIMIT"] = "1000000/second"
            gateway = [sys.executable, "-m", "gateway.cli"]
            keys: dict[str, bytes] = {}
            for agency in ["politie", "veilig_thuis"]:
                private_pem, public_pem = generate_keypair("Ed25519")
                Path(tmp, f"{agency}.pub.pem").write_bytes(public_pem)
                keys[agency] = private_pem
                subprocess.run(
                    [
                        *gateway,
                        "clients",
                        "register",
                        "--client-id",
                        f"{agency}-bench",
                        "--agency",
                        agency,
                        "--role",
                        "agency_system",
                        "--public-key",
                        str(Path(tmp, f"{agency}.pub.pem")),
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            procs.append(subprocess.Popen([*gateway, "serve"], env=env, stdout=subprocess.DEVNULL))
            baseline_url, gw_url = f"http://127.0.0.1:{base_port}", f"http://127.0.0.1:{gw_port}"
            wait_up(f"{baseline_url}/docs", procs[0])
            wait_up(f"{gw_url}/healthz", procs[1])

            def token(agency: str) -> str:
                assertion = make_client_assertion(f"{agency}-bench", keys[agency], f"{gw_url}/oauth2/token")
                r = httpx.post(
                    f"{gw_url}/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        "client_assertion": assertion,
                    },
                )
                r.raise_for_status()
                return str(r.json()["access_token"])

            headers = {"Authorization": f"Bearer {token('politie')}"}
            case = httpx.post(
                f"{gw_url}/v1/cases",
                headers=headers,
                json={"flow": "acuut", "subjects": [{"role": "kind", "bsn": "999990032"}]},
            ).json()["caseId"]
            share_one = {
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": ["veilig_thuis"],
                "payload": PAYLOAD,
            }
            share_three = share_one | {"recipients": ["veilig_thuis", "om", "rvdk"]}
            what_if = {
                "action": "share",
                "caseId": case,
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipient": "veilig_thuis",
            }
            results = [
                load(
                    "baseline: bare FastAPI, validate body",
                    args.threads,
                    args.requests,
                    lambda: httpx.Client(base_url=baseline_url),
                    lambda c: c.post("/share", json=share_one).status_code,
                ),
                load(
                    "gateway: GET /healthz",
                    args.threads,
                    args.requests,
                    lambda: httpx.Client(base_url=gw_url),
                    lambda c: c.get("/healthz").status_code,
                ),
                load(
                    "gateway: POST /v1/decisions (what-if)",
                    args.threads,
                    args.requests,
                    lambda: httpx.Client(base_url=gw_url, headers=headers),
                    lambda c: c.post("/v1/decisions", json=what_if).status_code,
                ),
                load(
                    "gateway: share, 1 recipient",
                    args.threads,
                    args.requests,
                    lambda: httpx.Client(base_url=gw_url, headers=headers),
                    lambda c: c.post(f"/v1/cases/{case}/shares", json=share_one).status_code,
                ),
                load(
                    "gateway: share, 3 recipients",
                    args.threads,
                    args.requests,
                    lambda: httpx.Client(base_url=gw_url, headers=headers),
                    lambda c: c.post(f"/v1/cases/{case}/shares", json=share_three).status_code,
                ),
            ]
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=10)
    base = results[0]
    print(f"{args.threads} client threads, {args.requests} requests per scenario, {os.cpu_count()} cores")
    columns = ("scenario", "req/s", "x base", "median ms", "x base", "p99 ms", "errors")
    print("{:<42} {:>8} {:>7} {:>10} {:>7} {:>8} {:>6}".format(*columns))
    for r in results:
        print(
            f"{r['name']:<42} {r['rps']:>8.0f} {r['rps'] / base['rps']:>7.2f} {r['median_ms']:>10.2f} "
            f"{r['median_ms'] / base['median_ms']:>7.1f} {r['p99_ms']:>8.2f} {r['errors']:>6}"
        )


if __name__ == "__main__":
    main()
