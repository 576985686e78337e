"""Schemathesis against the gateway's own OpenAPI document, every check, one real token per role.

A small size here (1 example per operation and phase: every operation, every check, every role, but
few inputs; the suite's budget is 12 minutes on two cores); ``make fuzz-api`` runs the same at 200.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.app import create_app
from tests.e2e import api_fuzz
from tests.e2e.conftest import Gateway, fuzz_settings, start_gateway
from tests.live import serve


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    runtime, sock = start_gateway(tmp_path_factory.mktemp("fuzz"), **fuzz_settings())
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        yield gw
        gw.http.close()
    runtime.close()


@pytest.mark.parametrize("role", api_fuzz.SUITE_ROLES, ids=lambda r: r.role or "public")
def test_schemathesis_finds_nothing(fuzz_gateway: Gateway, role: api_fuzz.Role) -> None:
    token = None
    if role.client_id:
        if role.client_id not in fuzz_gateway.keys:
            fuzz_gateway.register(role.client_id, role.agency, role.role)
        token = fuzz_gateway.token(role.client_id)
    result = api_fuzz.run(fuzz_gateway.base, token, role.tags, max_examples=1)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
