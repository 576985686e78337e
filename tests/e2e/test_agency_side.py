"""The agency side over real processes: a gateway signs, a ``gateway sim-agency`` process verifies and
stores each message id once, and keeps it across its own restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from connectors import AGENCIES, SimulatedAgencySystem
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from standins.agency import make_agency_app
from tests.connectors.samples import make_delivery
from tests.live import free_port, reserve_socket, serve

START_GUARD = 90.0  # a hang guard, not a timing: the process is waited on by its health endpoint


@contextmanager
def sim_agency(agency: str, port: int, data_dir: Path, gateway_url: str) -> Iterator[str]:
    command = [sys.executable, "-m", "gateway.cli", "sim-agency", "--agency", agency, "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--gateway-url", gateway_url]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_GUARD
    try:
        while True:
            try:
                if httpx.get(f"{url}/veilig-delen/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
            assert time.monotonic() < deadline, "sim-agency did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_sim_agency_verifies_signatures_and_stores_a_message_id_once(tmp_path: Path) -> None:
    sock = reserve_socket()
    gateway_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    om_port = free_port()
    with ExitStack() as stack:
        om_url = stack.enter_context(sim_agency("om", om_port, tmp_path / "agencies", gateway_url))
        others = {a: stack.enter_context(serve(make_agency_app(SimulatedAgencySystem(a)))) for a in AGENCIES}
        urls = others | {"om": om_url}
        settings = Settings(
            data_dir=tmp_path / "gw", port=sock.getsockname()[1], connectors="http", agency_urls=urls
        )
        runtime = Runtime(settings)
        stack.enter_context(serve(create_app(runtime=runtime), sock=sock))
        stack.callback(runtime.close)

        jwks = httpx.get(f"{gateway_url}/oauth2/jwks").json()["keys"]
        assert runtime.delivery_key.kid in [k["kid"] for k in jwks]

        om = runtime.connectors["om"]
        d = make_delivery(message_id="m-once", recipient="om")
        assert om.deliver(d).detail == "received"
        assert om.deliver(replace(d, trace_parent="")).detail.startswith("duplicate")

        # Unsigned, or signed by someone else: refused before anything is stored.
        unsigned = httpx.post(
            f"{om_url}/veilig-delen/deliveries",
            json={"messageId": "m-forged"},
            headers={"Idempotency-Key": "m-forged"},
        )
        assert unsigned.status_code == 401
        assert unsigned.json()["detail"].startswith("the request is not signed")
        assert httpx.get(f"{om_url}/sim/received").json()["messages"] == [{"messageId": "m-once", "times": 2}]

        # Fail after storing: the connector sees a 5xx, a retry finds the message already kept.
        r = httpx.post(f"{om_url}/sim/behaviour", json={"failAfterStore": 1})
        assert r.status_code == 200 and r.json()["fail_after_store"] == 1
        d2 = replace(d, message_id="m-two")
        with pytest.raises(Exception, match="answered 500"):
            om.deliver(d2)
        assert om.deliver(d2).detail.startswith("duplicate")

    # The store is the agency's own SQLite file: a restarted process still knows both messages.
    with sim_agency("om", free_port(), tmp_path / "agencies", gateway_url) as again:
        assert httpx.get(f"{again}/sim/received").json()["messages"] == [
            {"messageId": "m-once", "times": 2},
            {"messageId": "m-two", "times": 2},
        ]
