"""The OpenAPI document tells the truth: real problems, no 422, enums from the facts, described fields.

The document is read over HTTP from a running gateway; the fuzz runs (`test_api_fuzz.py`: schemathesis,
every check, one real token per role) then hold the gateway to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Gateway


@pytest.fixture(scope="module")
def doc(gateway: Gateway) -> dict[str, Any]:
    r = httpx.get(f"{gateway.base}/v1/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


def _properties(schema: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{where}.{name}", prop
        yield from _properties(prop, f"{where}.{name}")
        if isinstance(prop.get("items"), dict):
            yield from _properties(prop["items"], f"{where}.{name}[]")


def test_no_operation_documents_the_422_the_api_never_sends(doc: dict[str, Any]) -> None:
    with_422 = [
        f"{m} {p}"
        for m, p, op in _operations(doc)
        if "422" in op["responses"] and p not in ("/v1/policies/reload", "/v1/policies/impact")
    ]
    assert with_422 == []
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_route_documents_its_problems(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        responses = op["responses"]
        if path in ("/healthz", "/metrics"):
            continue
        assert "503" in responses, f"{method} {path}"
        if path == "/readyz":
            continue
        assert "Retry-After" in responses["503"]["headers"], f"{method} {path}"
        if op.get("security"):
            for status in ("401", "403", "429"):
                assert status in responses, f"{method} {path} {status}"
        if "requestBody" in op:
            assert {"400", "413"} <= set(responses), f"{method} {path}"
        if "{" in path:
            assert "404" in responses, f"{method} {path}"
    share = doc["paths"]["/v1/cases/{caseId}/shares"]["post"]["responses"]["400"]
    assert share["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_identifiers_are_enums_of_the_loaded_facts(doc: dict[str, Any], gateway: Gateway) -> None:
    facts = gateway.runtime.process_facts()
    share = doc["components"]["schemas"]["ShareIn"]["properties"]
    assert share["informationType"]["enum"] == sorted(facts.information_types())
    assert share["purpose"]["enum"] == sorted(facts.purposes())
    assert "veiligheidsbeoordeling" in share["informationType"]["enum"]
    params = {p["name"]: p for p in doc["paths"]["/v1/audit/entries"]["get"]["parameters"]}
    purpose = params["purpose"]["schema"]
    alternatives = purpose.get("anyOf", [purpose])
    assert any(a.get("enum") == sorted(facts.purposes()) for a in alternatives)


def test_every_property_and_parameter_is_described(doc: dict[str, Any]) -> None:
    missing = [
        where
        for name, schema in doc["components"]["schemas"].items()
        for where, prop in _properties(schema, name)
        if "description" not in prop
    ]
    missing += [
        f"{m} {path} {p['name']}"
        for m, path, op in _operations(doc)
        for p in op.get("parameters", [])
        if "description" not in p
    ]
    assert missing == []


def test_every_operation_has_an_example(doc: dict[str, Any]) -> None:
    without = []
    for method, path, op in _operations(doc):
        body = op.get("requestBody", {}).get("content", {})
        examples = [c for c in body.values() if "example" in c or "examples" in c]
        examples += [p for p in op.get("parameters", []) if "example" in p or "examples" in p]
        examples += [
            c for r in op["responses"].values() for c in r.get("content", {}).values() if "example" in c
        ]
        if not examples:
            without.append(f"{method} {path}")
    assert without == []
