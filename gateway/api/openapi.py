"""The OpenAPI document tells the truth: the problems each route really answers, identifiers as enums.

FastAPI documents a 422 that this API never sends (validation errors are 400 problem+json) and knows
nothing of the middleware's 413 and 429 or the dependency faults' 503. This module post-processes the
generated document once per policy revision:

- every operation lists the problem+json answers it can give, derived from its shape (a body: 400 and
  413; a token: 401, 403 and 429; a path parameter: 404; every route: 503) plus the few that only some
  routes give (`ROUTE_PROBLEMS`), each with its ``Retry-After`` header where one is sent;
- ``informationType``, ``purpose`` and ``step`` are enums of the loaded revision's facts, so a client
  (and a fuzzer) knows the identifiers the gateway accepts;
- every property has a description (`FIELD_DESCRIPTIONS` for the names the contract shares across
  shapes; a model's own description wins), every operation an example (`EXAMPLES`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from gateway.runtime import Runtime

PROBLEM_JSON = "application/problem+json"

_PROBLEM_TITLES: dict[int, str] = {
    400: "Invalid input: a field is malformed, unknown or out of range (`errors` names each field)",
    401: "No access token, or an invalid or expired one (see `WWW-Authenticate`)",
    403: "The token's scope or role does not allow this call, or the policy refused (`reasons`)",
    404: "No such resource, or one the caller may not see (the same answer for both)",
    409: "The request conflicts with the resource's state (e.g. not a legal move of the process)",
    413: "The body is larger than the gateway accepts (`GATEWAY_MAX_BODY_BYTES`)",
    422: "The candidate policy revision did not compile or its tests failed; the old one stays active",
    429: "Too many requests from this client or address; retry after `Retry-After` seconds",
    502: "The agency system did not answer usefully",
    503: "A dependency (database, audit log, policy engine) is unavailable; retry after `Retry-After`",
    504: "The agency system did not answer in time",
}

ROUTE_PROBLEMS: dict[str, set[int]] = {
    "move_case": {403, 409},
    "set_track": {403},
    "request_information": {403, 502, 504},
    "reload": {422},
    "impact": {422},
    "token": {400, 401, 429},
    "what_if": {404},
    "access_evaluation": {404},
    "access_evaluations": {404},
    # A cursor or tree size past the end of the log, a leaf outside its tree: well-formed, nothing there.
    "entries": {404},
    "search": {404},
    "subject_report": {404},
    "case_report": {404},
    "inclusion": {404},
    "consistency": {404},
}
"""Problems only some routes answer, by route name (the operation id)."""

MEDIA_TYPES: dict[str, str] = {
    "metrics": "text/plain",
    "checkpoint": "text/plain",
    "verifier_key": "text/plain",
    "export": "application/x-ndjson",
}
"""Routes whose success is not JSON, by route name."""

ALSO_MEDIA_TYPES: dict[str, dict[str, str]] = {
    "subject_report": {
        "application/pdf": "The report as a PDF for the person (Accept: application/pdf).",
        "text/csv": "The report as CSV: UTF-8 with BOM, ';' separated, Dutch headings (Accept: text/csv).",
    },
    "case_report": {
        "application/pdf": "The report as a PDF (Accept: application/pdf).",
        "text/csv": "The report as CSV: UTF-8 with BOM, ';' separated, Dutch headings (Accept: text/csv).",
    },
}
"""Routes that answer other formats beside JSON when the Accept header asks, by route name."""

UNLIMITED = {"healthz", "readyz", "metrics"}
"""Operational routes: no token, no rate limit, and they answer even when a dependency is down."""

FIELD_DESCRIPTIONS: dict[str, str] = {
    "caseId": "The case's identifier, as the gateway issued it when the case was opened.",
    "flow": "The process the case follows: `acuut` (acute danger) or `structureel` (structural).",
    "step": "The step of the flow the case is in (see DESIGN.md section 2).",
    "tracks": "Which tracks are open: `zorg` (care, Veilig Thuis) and `straf` (criminal, politie/OM).",
    "zorg": "Whether the care track (Veilig Thuis) is open.",
    "straf": "Whether the criminal track (politie / OM) is open.",
    "open": "Open (true) or close (false) the track.",
    "track": "Which track: `zorg` or `straf`.",
    "openedBy": "The agency that opened the case.",
    "subjects": "The people the case is about, each with a role.",
    "role": "The person's role in the case.",
    "bsn": "Burgerservicenummer: nine digits that pass the elfproef. Never stored or logged in clear.",
    "pseudonym": "The keyed pseudonym (HMAC-SHA256) that stands for the person's BSN.",
    "createdAt": "When the resource was created (UTC).",
    "updatedAt": "When the resource last changed (UTC).",
    "informationType": "The kind of information (an identifier of the policy's facts).",
    "purpose": "The purpose the information is shared or asked for (an identifier of the policy's facts).",
    "recipients": "The agencies to share with; each is decided on its own.",
    "recipient": "The receiving agency.",
    "holder": "The agency whose system holds the information asked for.",
    "payload": "The information as a JSON object; each recipient receives only the fields it may see.",
    "basedOn": "Ids of received messages (to the caller's agency, in this case) the data comes from.",
    "shareId": "The share's identifier.",
    "policyRevision": "The policy revision (`sha256:...`) that decided.",
    "results": "One decision per recipient, in the order of the request.",
    "allowed": "Whether the policy allowed it.",
    "reasons": "Why: reason codes with an English and a Dutch sentence.",
    "code": "A stable reason code (see docs/policies.md).",
    "message": "The reason in English.",
    "messageNl": "The reason in Dutch.",
    "legalBasis": "The legal basis of the allow (an article of the Wmo 2015, Wpg, Wjsg, Jeugdwet or BW).",
    "messageId": "The message's identifier; the recipient acknowledges it by this id.",
    "fields": (
        "The payload fields that went to this recipient (all others were stripped), and `bsn:<role>` for "
        "each role whose subjects it may identify (their BSN travels in the message's `subjects`)."
    ),
    "delivered": "Whether the recipient's system accepted the push (the message waits in its inbox anyway).",
    "attempts": "Push attempts made so far.",
    "deliveredAt": "When the recipient's system took the message (UTC).",
    "lastError": "The kind of the last failed push (never the agency's own words).",
    "messages": "Messages the caller's agency has not acknowledged yet, oldest first.",
    "sender": "The agency that shared the information.",
    "receivedAt": "When the gateway stored the message (UTC).",
    "usageRestriction": "The purpose binding that travels with the data.",
    "origin": "Where the data came from: the messages it was shared on from, and theirs in turn.",
    "requestId": "The request's identifier, as recorded in the audit log.",
    "data": "The holder's answer, minimised to the fields the requester may receive.",
    "action": "The action to decide.",
    "flowTo": "The flow to move to.",
    "payloadFields": "The payload field names a share would carry.",
    "obligations": "What the gateway must do with an allow (each with a code).",
    "index": "The entry's position in the log, counting from 0.",
    "leafData": "Base64 of the exact bytes that were hashed into the log (RFC 9162 leaf data).",
    "entry": "The same bytes parsed as JSON.",
    "entries": "The matching entries, oldest first.",
    "next": "The cursor of the next page, or null on the last page.",
    "agency": "An agency identifier.",
    "type": "The kind of audit entry.",
    "from": "From this time (UTC, inclusive), or from this tree size for a consistency proof.",
    "to": "Up to this time (UTC, inclusive), or to this tree size for a consistency proof.",
    "limit": "At most this many items.",
    "cursor": "Where the next page starts, as given in `next` by the previous page.",
    "checkpoint": "The C2SP signed checkpoint the rows are taken from.",
    "treeSize": "The size of the tree the proof or the rows refer to.",
    "hashes": "The proof's hashes, base64, in RFC 9162 order.",
    "time": "When it happened (UTC).",
    "actor": "The agency that acted.",
    "counterpart": "The other agency of the exchange.",
    "outcome": "What happened after the decision.",
    "traceId": "The W3C trace id of the request.",
    "revision": "The policy revision (`sha256:...`).",
    "engine": "The policy engine: `embedded` (regopy) or `opa`.",
    "loadedAt": "When the revision was loaded (UTC).",
    "modules": "The Rego modules of the revision.",
    "grant_type": "Always `client_credentials`.",
    "client_assertion_type": "Always the RFC 7523 JWT bearer assertion type.",
    "client_assertion": "A JWT signed with the client's registered key (RFC 7523).",
    "scope": "The scopes asked for, space-separated; the role's scope when absent.",
    "errors": "Each bad field with what is wrong with it.",
    "field": "The field, as a dotted path (e.g. `subjects[0].bsn`).",
    "title": "A short summary of the problem type.",
    "status": "The HTTP status code.",
    "detail": "What went wrong, for a person.",
}
"""Descriptions of the property names the contract uses across shapes; one meaning per name."""

EXAMPLES: dict[str, dict[str, Any]] = {
    "open_case": {
        "flow": "acuut",
        "subjects": [{"role": "slachtoffer", "bsn": "999990019"}, {"role": "kind", "bsn": "999990032"}],
    },
    "move_case": {"step": "motorkapoverleg"},
    "set_track": {"open": True},
    "share": {
        "informationType": "melding",
        "purpose": "veiligheid_herstellen",
        "recipients": ["veilig_thuis"],
        "payload": {"samenvatting": "Melding huiselijk geweld", "datum": "2026-12-01"},
    },
    "request_information": {
        "informationType": "strafrechtelijke_informatie",
        "purpose": "veiligheid_beoordelen",
        "holder": "politie",
    },
    "what_if": {
        "action": "share",
        "caseId": "3f0c6d2e-8a4b-4c1e-9d7f-2b5a6c8e1f00",
        "informationType": "melding",
        "purpose": "veiligheid_herstellen",
        "recipient": "veilig_thuis",
    },
    "access_evaluation": {
        "subject": {"type": "agency", "id": "politie"},
        "action": {"name": "share"},
        "resource": {"type": "melding", "id": "3f0c6d2e-8a4b-4c1e-9d7f-2b5a6c8e1f00"},
        "context": {"purpose": "veiligheid_herstellen", "recipient": "veilig_thuis"},
    },
    "access_evaluations": {
        "subject": {"type": "agency", "id": "politie"},
        "action": {"name": "share"},
        "resource": {"type": "melding", "id": "3f0c6d2e-8a4b-4c1e-9d7f-2b5a6c8e1f00"},
        "context": {"purpose": "veiligheid_herstellen"},
        "evaluations": [{"context": {"recipient": "veilig_thuis"}}, {"context": {"recipient": "om"}}],
        "options": {"evaluations_semantic": "execute_all"},
    },
    "impact": {"last": 1000},
    "reload": {"expectImpact": {"window": {"fromIndex": 3, "toIndex": 120}, "changes": []}},
    "search": {"bsn": "999990019", "limit": 50},
    "subject_report": {"bsn": "999990019"},
    "case_report": {"caseId": "3f0c6d2e-8a4b-4c1e-9d7f-2b5a6c8e1f00"},
}
"""A request body example per operation that takes one (the examples phase of a fuzzer starts here)."""

PARAMETER_EXAMPLES: dict[str, Any] = {
    "caseId": "3f0c6d2e-8a4b-4c1e-9d7f-2b5a6c8e1f00",
    "messageId": "9b2e4c1a-7d3f-4e8b-a6c5-0f1d2e3c4b5a",
    "shareId": "5d1c9e7a-2b4f-4a8c-9e3d-6f0a1b2c3d4e",
    "track": "zorg",
    "limit": 100,
    "index": 0,
    "treeSize": 1,
    "from": 1,
    "to": 2,
    "start": 0,
    "end": 100,
    "agency": "veilig_thuis",
    "informationType": "melding",
    "purpose": "veiligheid_herstellen",
    "type": "exchange",
}
"""An example per parameter name, so every operation that takes parameters shows one."""

RESPONSE_EXAMPLES: dict[str, Any] = {
    "healthz": {"status": "ok"},
    "authzen_configuration": {
        "policy_decision_point": "https://veilig-delen.example",
        "access_evaluation_endpoint": "https://veilig-delen.example/access/v1/evaluation",
        "access_evaluations_endpoint": "https://veilig-delen.example/access/v1/evaluations",
    },
    "readyz": {
        "status": "ready",
        "checks": {"database": "ok", "rateLimits": "ok", "policy": "ok", "signingKey": "ok"},
    },
    "metrics": "# TYPE gateway_http_requests_total counter\n",
    "checkpoint": "veilig-delen.example/audit\n42\nq8x5...=\n\n\u2014 veilig-delen.example/audit Ab12...\n",
    "verifier_key": "veilig-delen.example/audit+1a2b3c4d+AbCdEf...",
    "policy_info": {
        "revision": "sha256:114777131a39a1726a6c40180a3216e4a8886cc0995abaafe0b69aeeaa4c0617",
        "engine": "embedded",
        "loadedAt": "2026-12-01T09:00:00Z",
        "modules": ["veiligdelen/decision/decision.rego"],
    },
    "reload": {
        "revision": "sha256:114777131a39a1726a6c40180a3216e4a8886cc0995abaafe0b69aeeaa4c0617",
        "previousRevision": "sha256:0b5e7c0e4f3a5d1c2b9a8e7f6d5c4b3a2918f7e6d5c4b3a29180f7e6d5c4b3a2",
        "testsPassed": 131,
    },
    "impact": {
        "baselineRevision": "sha256:0b5e7c0e4f3a5d1c2b9a8e7f6d5c4b3a2918f7e6d5c4b3a29180f7e6d5c4b3a2",
        "candidateRevision": "sha256:114777131a39a1726a6c40180a3216e4a8886cc0995abaafe0b69aeeaa4c0617",
        "window": {"last": 1000, "since": None, "fromIndex": 3, "toIndex": 120},
        "totals": {"replayed": 60, "distinctInputs": 14, "changed": 1, "unchanged": 59},
        "byKind": {"reasons": 1, "refused": 1},
        "changes": [
            {
                "index": 17,
                "recipient": "politie",
                "changes": [
                    {"kind": "refused"},
                    {"kind": "reasons", "added": ["purpose_not_allowed"], "removed": ["allowed"]},
                ],
            }
        ],
    },
    "metadata": {
        "issuer": "https://gateway.example",
        "token_endpoint": "https://gateway.example/oauth2/token",
        "jwks_uri": "https://gateway.example/oauth2/jwks",
    },
    "jwks": {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": "2026-12",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            }
        ]
    },
    "token": {"access_token": "eyJ...", "token_type": "Bearer", "expires_in": 300, "scope": "exchange"},
}
"""A success example for the operations that take neither a body nor a parameter."""


MAX_SAFE_NUMBER = 2**53 - 1


def _json_value_schema() -> dict[str, Any]:
    """Any JSON value the gateway accepts in a payload: numbers within +-(2^53 - 1) (strictjson)."""
    ref = {"$ref": "#/components/schemas/JsonValue"}
    return {
        "description": "A JSON value; numbers lie within -(2^53-1)..2^53-1, nesting at most 32 deep.",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "string"},
            {"type": "number", "minimum": -MAX_SAFE_NUMBER, "maximum": MAX_SAFE_NUMBER},
            {"type": "array", "items": ref},
            {"type": "object", "additionalProperties": ref},
        ],
    }


def _problem_schemas() -> dict[str, Any]:
    return {
        "JsonValue": _json_value_schema(),
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem document.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string", "description": "A URI that identifies the problem type."},
                "title": {"type": "string", "description": FIELD_DESCRIPTIONS["title"]},
                "status": {"type": "integer", "description": FIELD_DESCRIPTIONS["status"]},
                "detail": {"type": "string", "description": FIELD_DESCRIPTIONS["detail"]},
                "errors": {
                    "type": "array",
                    "description": FIELD_DESCRIPTIONS["errors"],
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {
                            "field": {"type": "string", "description": FIELD_DESCRIPTIONS["field"]},
                            "message": {"type": "string", "description": "What is wrong with it."},
                        },
                    },
                },
                "reasons": {
                    "type": "array",
                    "description": FIELD_DESCRIPTIONS["reasons"],
                    "items": {"$ref": "#/components/schemas/Reason"},
                },
            },
        },
        "OAuthError": {
            "type": "object",
            "description": "An OAuth 2.0 error response (RFC 6749 section 5.2).",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "The OAuth 2.0 error code."},
                "error_description": {"type": "string", "description": "What went wrong, for a person."},
            },
        },
    }


def _retry_after() -> dict[str, Any]:
    return {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }


def _problem_response(status: int, oauth: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if oauth and status in (400, 401):
        # The token endpoint answers its own errors in the RFC 6749 shape.
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
    response: dict[str, Any] = {"description": _PROBLEM_TITLES[status], "content": content}
    if status in (429, 503):
        response["headers"] = _retry_after()
    if status == 401 and not oauth:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "The Bearer challenge (RFC 6750).",
                "schema": {"type": "string"},
            }
        }
    return response


def _statuses(name: str, operation: dict[str, Any]) -> set[int]:
    """The problems an operation can answer, from its shape and `ROUTE_PROBLEMS`."""
    if name in UNLIMITED:
        return set()
    statuses = {503} | ROUTE_PROBLEMS.get(name, set())
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if params or has_body:
        statuses.add(400)
    if has_body:
        statuses.add(413)
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    return statuses


def _schemas_in(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (property name, schema) of the components, and every parameter's, to annotate in place."""
    for component in doc.get("components", {}).get("schemas", {}).values():
        yield from _properties(component)
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            for param in operation.get("parameters", []):
                yield param["name"], param
                yield from _properties(param.get("schema", {}))


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
        yield from _properties(prop)
        for alt in prop.get("anyOf", []):
            yield from _properties(alt)
        if isinstance(prop.get("items"), dict):
            yield from _properties(prop["items"])


def _string_schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The string schemas in ``schema``: itself, its ``anyOf`` alternatives, or its items."""
    if schema.get("type") == "string":
        yield schema
    for alt in schema.get("anyOf", []):
        yield from _string_schemas(alt)
    if isinstance(schema.get("items"), dict):
        yield from _string_schemas(schema["items"])


def _enums(rt: Runtime) -> dict[str, list[str]]:
    facts = rt.process_facts()
    steps = sorted({s for flow in facts.flows() for s in facts.steps(flow)})
    return {
        "informationType": sorted(facts.information_types()),
        "purpose": sorted(facts.purposes()),
        "step": steps,
    }


def _steps_per_flow(schemas: dict[str, Any], rt: Runtime) -> None:
    """A body naming a flow and a step takes only that flow's steps: say so as alternatives per flow.

    Without a flow (a transition within the case's own flow) any step of the facts fits the schema;
    whether it is a step of the case's flow is the case's state, answered with 409.
    """
    facts = rt.process_facts()
    for schema in schemas.values():
        props = schema.get("properties", {})
        if "flow" not in props or "step" not in props:
            continue
        step_required = "step" in schema.get("required", [])
        alternatives = []
        if "flow" not in schema.get("required", []):
            alternatives.append({"properties": {"flow": {"type": "null"}}})
        for flow in facts.flows():
            step: dict[str, Any] = {"enum": facts.steps(flow)}
            if not step_required:
                step = {"anyOf": [step, {"type": "null"}]}
            alternatives.append({"properties": {"flow": {"const": flow}, "step": step}})
        schema["anyOf"] = alternatives


def annotate(doc: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """The generated document with the truth added: problems, enums, descriptions, examples."""
    doc = copy.deepcopy(doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_problem_schemas())
    for schema in schemas.values():
        payload = schema.get("properties", {}).get("payload")
        if payload is not None and payload.get("type") == "object":
            payload["additionalProperties"] = {"$ref": "#/components/schemas/JsonValue"}
    _steps_per_flow({k: v for k, v in schemas.items() if k in ("CaseCreate", "TransitionIn")}, rt)
    enums = _enums(rt)
    for name, schema in list(_schemas_in(doc)):
        if name in enums:
            target = schema.get("schema", schema)
            for string in _string_schemas(target):
                string["enum"] = enums[name]
                string.pop("pattern", None)
        if "description" not in schema and name in FIELD_DESCRIPTIONS:
            schema["description"] = FIELD_DESCRIPTIONS[name]
        if name == "bsn":
            # The elfproef is no regular expression; the format names it (see docs/agency-developers).
            for string in _string_schemas(schema.get("schema", schema)):
                string.update({"pattern": "^[0-9]{9}$", "format": "bsn"})
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            name = operation.get("operationId", "")
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if name in MEDIA_TYPES and "200" in responses:
                responses["200"]["content"] = {MEDIA_TYPES[name]: {"schema": {"type": "string"}}}
            if name == "readyz":
                responses["503"] = {
                    "description": "Not ready: a check failed (the body says which)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            for status in sorted(_statuses(name, operation)):
                responses.setdefault(str(status), _problem_response(status, oauth=name == "token"))
            example = EXAMPLES.get(name)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if example is not None and body is not None:
                body["example"] = example
            for param in operation.get("parameters", []):
                if param["name"] in PARAMETER_EXAMPLES:
                    param.setdefault("example", PARAMETER_EXAMPLES[param["name"]])
            success = next((responses[c] for c in ("200", "201") if c in responses), None)
            if name in RESPONSE_EXAMPLES and success is not None:
                for media in success.setdefault("content", {}).values():
                    media["example"] = RESPONSE_EXAMPLES[name]
            if name in ALSO_MEDIA_TYPES and success is not None:
                for media_type, description in ALSO_MEDIA_TYPES[name].items():
                    schema = {"type": "string", "description": description}
                    if media_type == "application/pdf":
                        schema["format"] = "binary"
                    success["content"][media_type] = {"schema": schema}
    return doc


def install(app: FastAPI, rt: Runtime) -> None:
    """Serve the annotated document, rebuilt when the policy revision changes."""
    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        revision = rt.policy.current.revision
        if revision not in cache:
            generated = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                contact=app.contact,
                routes=app.routes,
            )
            cache.clear()
            cache[revision] = annotate(generated, rt)
        return cache[revision]

    app.openapi = openapi  # type: ignore[method-assign]


def operation_id(route: APIRoute) -> str:
    """Operation ids are the route functions' names: ``share``, ``open_case``, ``subject_report``."""
    return route.name
