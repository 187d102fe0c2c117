"""Render OAuth errors as RFC 6749 §5.2 JSON with `Cache-Control: no-store`.

The only place an `OAuthError` becomes a response. Unexpected exceptions become a generic
`server_error` without detail; the detail goes to the log without request contents.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.errors import InvalidClient, InvalidRequest, InvalidToken, OAuthError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

log = logging.getLogger(__name__)


def oauth_response(exc: OAuthError, *, basic_challenge: bool = False,
                   dpop_nonce: str | None = None) -> JSONResponse:
    headers = dict(NO_STORE)
    if dpop_nonce is not None:  # RFC 9449 §8: on use_dpop_nonce, and any answer to a proof
        headers["DPoP-Nonce"] = dpop_nonce
    if isinstance(exc, InvalidClient) and basic_challenge:
        headers["WWW-Authenticate"] = 'Basic realm="agent-broker", charset="UTF-8"'
    if isinstance(exc, InvalidToken):  # RFC 6750 §3
        headers["WWW-Authenticate"] = 'Bearer realm="agent-broker", error="invalid_token"'
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int):  # RFC 6585 §4 (429), RFC 9110 §10.2.3
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


def dpop_nonce(request: Request) -> str | None:
    """The DPoP nonce to answer this request with (set by `broker.http.dpop.proven_key`)."""
    nonce = getattr(request.state, "dpop_nonce", None)
    return nonce if isinstance(nonce, str) else None


def install_error_handlers(app: FastAPI) -> None:
    async def on_oauth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OAuthError)
        return oauth_response(exc, basic_challenge="authorization" in request.headers,
                              dpop_nonce=dpop_nonce(request))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        return oauth_response(InvalidRequest())

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = {"error": "not_found" if exc.status_code == 404 else "invalid_request",
                "error_description": str(exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=NO_STORE)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        body = {"error": "server_error", "error_description": "An internal error occurred."}
        return JSONResponse(body, status_code=500, headers=NO_STORE)

    app.add_exception_handler(OAuthError, on_oauth_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
