"""docs/agency-api.yaml is a valid OpenAPI 3.1 document and says what the connector does."""

from __future__ import annotations

import yaml
from openapi_spec_validator import validate

from connectors._wire import DELIVERIES_PATH, FETCH_PATH, HEALTH_PATH, DeliveryBody
from gateway.settings import REPO_ROOT


def test_the_agency_api_is_valid_openapi_and_matches_the_wire() -> None:
    spec = yaml.safe_load((REPO_ROOT / "docs" / "agency-api.yaml").read_text())
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == {DELIVERIES_PATH, FETCH_PATH, HEALTH_PATH}
    delivery = spec["components"]["schemas"]["Delivery"]["properties"]
    assert set(delivery) == {f.alias for f in DeliveryBody.model_fields.values()}
    assert set(spec["components"]["securitySchemes"]) == {"mtls", "oauth2"}
    headers = {p["$ref"].rsplit("/", 1)[1] for p in spec["paths"][DELIVERIES_PATH]["post"]["parameters"]}
    assert headers == {"IdempotencyKey", "TraceParent", "SignatureInput", "Signature", "ContentDigest"}
