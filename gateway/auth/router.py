"""HTTP routes of the authorization server: token endpoint, RFC 8414 metadata and the JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from gateway.auth.deps import AuthServiceDep, auth_service_of
from gateway.auth.server import TokenEndpoint
from gateway.auth.service import JWKS_PATH, METADATA_PATH, TOKEN_PATH

router = APIRouter(tags=["authentication"])

#: A token request has five parameters at most; a few more are tolerated, thousands are not parsed.
MAX_FORM_FIELDS = 20

_TOKEN_FORM_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_assertion_type", "client_assertion"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {"type": "string", "description": "RFC 7523 JWT"},
                        "scope": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(TOKEN_PATH, openapi_extra=_TOKEN_FORM_SCHEMA, summary="Get an access token")
async def token(request: Request) -> JSONResponse:
    """OAuth2 client credentials with a ``private_key_jwt`` assertion; errors per RFC 6749 section 5.2."""
    auth = auth_service_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        result = TokenEndpoint.invalid_request("send the parameters as application/x-www-form-urlencoded")
    else:
        try:
            form = await request.form(max_fields=MAX_FORM_FIELDS)
        except HTTPException as e:
            # Starlette's only refusals of a url-encoded form: too many fields, or one too large.
            too_many = str(e.detail).startswith("Too many fields")
            result = TokenEndpoint.invalid_request(
                f"too many parameters (at most {MAX_FORM_FIELDS})" if too_many else "a parameter is too large"
            )
        else:
            fields = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
            address = request.client.host if request.client else None
            result = await run_in_threadpool(auth.token_response, fields, dict(request.headers), address)
    headers = {name: value for name, value in result.headers if name.lower() != "content-type"}
    return JSONResponse(result.body, status_code=result.status, headers=headers)


@router.get(METADATA_PATH, summary="Authorization server metadata (RFC 8414)")
def metadata(auth: AuthServiceDep) -> dict[str, Any]:
    """Issuer, token endpoint, JWKS URI and what the token endpoint supports."""
    return auth.metadata()


@router.get(JWKS_PATH, summary="Public keys that verify access tokens and delivery signatures")
def jwks(auth: AuthServiceDep) -> dict[str, Any]:
    """The JSON Web Key Set: the token-signing key and the delivery-signing key (RFC 9421), by ``kid``."""
    return auth.jwks()
