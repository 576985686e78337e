"""Measure what strict input at the edge costs a request: ``BodyLimits`` and ``strict_json``.

    .venv/bin/python -m bench.strict_input            # a share body of about 1 KB
    .venv/bin/python -m bench.strict_input --kb 64    # a larger one

Reports the best per-call time of five runs for: the standard library's ``json.loads`` (what FastAPI
parses anyway), ``strict_json`` (the same parse with its hooks and the walk), and a request through
``BodyLimits`` around an app that only reads the body, beside that bare app. Not a test: the numbers
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import timeit
from typing import Any

from gateway.api.limits import BodyLimits
from gateway.settings import MAX_BODY_BYTES
from gateway.strictjson import strict_json


def share_body(kb: int) -> bytes:
    """A share body of about ``kb`` KiB, with nesting, unicode and numbers like a real one."""
    payload: dict[str, Any] = {
        "datumTijd": "2026-11-28T02:14:00Z",
        "locatie": "fictief adres 12, Ĳsselstein",
        "aard": "fysiek geweld",
        "betrokkenen": [{"rol": "kind", "leeftijd": 7}, {"rol": "ouder", "leeftijd": 34}],
        "meldingstekst": "",
    }
    body = {"informationType": "melding", "purpose": "veiligheid_herstellen", "recipients": ["om"]}
    body["payload"] = payload
    while len(json.dumps(body, ensure_ascii=False).encode()) < kb * 1024:
        payload["meldingstekst"] += "Buren melden geschreeuw. "
    return json.dumps(body, ensure_ascii=False).encode()


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=1)
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    raw, n = share_body(args.kb), args.n

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(_message: Any) -> None:
        return None

    scope = {
        "type": "http",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
    }
    limited = BodyLimits(bare, MAX_BODY_BYTES)
    loop = asyncio.new_event_loop()

    async def requests(app: Any) -> None:
        for _ in range(n):
            await app(scope, receive, send)

    print(f"body: {len(raw)} bytes, best of 5 runs of {n}")
    for name, call in [("json.loads", lambda: json.loads(raw)), ("strict_json", lambda: strict_json(raw))]:
        print(f"  {name:<16} {min(timeit.repeat(call, number=n, repeat=5)) / n * 1e6:7.1f} us")
    for name, app in [("bare app", bare), ("BodyLimits + app", limited)]:
        runs = timeit.repeat(lambda app=app: loop.run_until_complete(requests(app)), number=1, repeat=5)
        print(f"  {name:<16} {min(runs) / n * 1e6:7.1f} us")


if __name__ == "__main__":
    main()
