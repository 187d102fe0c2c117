"""OpenAPI descriptions of the form-encoded OAuth endpoints and of every error answer.

The OAuth routes read their forms themselves (`broker.http.forms`, strict RFC 6749 rules), so
FastAPI cannot infer a request schema; these documents state it, and every status a route
may answer, so that clients and the schemathesis fuzz test (tests/security) can hold the
broker to its schema. Only documentation: nothing here is used to validate a request.
"""

from __future__ import annotations

from typing import Any

from broker.exchange import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    REQUESTED_TOKEN_TYPES,
    SUBJECT_TOKEN_TYPES,
)

FORM = "application/x-www-form-urlencoded"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_STRING = {"type": "string"}
_NO_STORE = {"Cache-Control": {"description": "Always `no-store`.", "schema": _STRING}}

OAUTH_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": _STRING, "error_description": _STRING},
}

_CLIENT_AUTH: dict[str, Any] = {
    "client_id": _STRING,
    "client_secret": {**_STRING, "description": "client_secret_post"},
    "client_assertion_type": {"type": "string", "enum": [JWT_BEARER]},
    "client_assertion": {**_STRING, "description": "private_key_jwt (RFC 7523)"},
}


def _form(properties: dict[str, Any], required: list[str], summary: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {**properties, **_CLIENT_AUTH},
              "required": required}
    return {"requestBody": {"required": True, "description": summary,
                            "content": {FORM: {"schema": schema}}}}


def _error(description: str, **headers: Any) -> dict[str, Any]:
    return {"description": description, "headers": {**_NO_STORE, **headers},
            "content": {"application/json": {"schema": OAUTH_ERROR}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": _NO_STORE,
            "content": {"application/json": {"schema": schema}}}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait (RFC 6585).",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}

CLIENT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("RFC 6749 §5.2 error: invalid_request, invalid_grant, invalid_scope, "
                "invalid_target, unauthorized_client, unsupported_grant_type; "
                "invalid_dpop_proof (RFC 9449, token endpoint)."),
    401: _error("invalid_client: client authentication failed."),
    413: _error("invalid_request: the body exceeds `max_request_bytes`."),
    429: _error("temporarily_unavailable: too many failed client authentications.",
                **_RETRY_AFTER),
    503: _error("temporarily_unavailable: Redis, Cerbos or an upstream JWKS did not answer."),
}

TOKEN_FORM = _form({
    "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
    "subject_token": _STRING,
    "subject_token_type": {"type": "string", "enum": list(SUBJECT_TOKEN_TYPES)},
    "resource": {**_STRING, "description": "RFC 8707 resource indicator, no fragment"},
    "audience": _STRING,
    "scope": _STRING,
    "requested_token_type": {"type": "string", "enum": list(REQUESTED_TOKEN_TYPES)},
    "actor_token": _STRING,
    "actor_token_type": _STRING,
}, ["grant_type", "subject_token", "subject_token_type"], "RFC 8693 token exchange request.")

TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("The agent token.", {
        "type": "object",
        "required": ["access_token", "issued_token_type", "token_type", "expires_in", "scope"],
        "properties": {"access_token": _STRING,
                       "issued_token_type": {"type": "string", "enum": [ACCESS_TOKEN_TYPE]},
                       "token_type": {"type": "string", "enum": ["Bearer", "DPoP"]},
                       "expires_in": {"type": "integer", "minimum": 1},
                       "scope": _STRING}}),
    **CLIENT_ERRORS,
}

INTROSPECT_FORM = _form({"token": _STRING, "token_type_hint": _STRING}, ["token"],
                        "RFC 7662 introspection, by a registered resource.")
INTROSPECT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("RFC 7662 §2.2: `active`, and the token's claims when active.", {
        "type": "object", "required": ["active"],
        "properties": {"active": {"type": "boolean"}}}),
    **CLIENT_ERRORS,
}

REVOKE_FORM = _form({"token": _STRING, "token_type_hint": _STRING}, ["token"],
                    "RFC 7009 revocation of one of the client's own tokens.")
REVOKE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ok("Revoked, or nothing to revoke (RFC 7009 §2.2).", {"type": "object"}),
    **CLIENT_ERRORS,
}

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid_request: a parameter or the body is malformed."),
    401: _error("invalid_token: the bearer token is missing, invalid or expired.",
                **{"WWW-Authenticate": {"description": "RFC 6750 challenge",
                                        "schema": _STRING}}),
    403: _error("access_denied: policy does not allow this action."),
    404: _error("not_found: no such object, or not visible to the caller."),
    503: _error("temporarily_unavailable: Redis or Cerbos did not answer."),
}
