"""Metadata (RFC 8414), JWKS, health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.dpop import ALGORITHMS as DPOP_ALGORITHMS
from broker.errors import DependencyUnavailable
from broker.exchange import GRANT_TYPE
from broker.http.services import BrokerServices

router = APIRouter()

ASSERTION_ALGS = ["EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256"]


def _services(request: Request) -> BrokerServices:
    services: BrokerServices = request.app.state.services
    return services


def build_metadata(services: BrokerServices) -> dict[str, Any]:
    issuer = services.settings.issuer
    scopes = sorted({s for r in services.settings.resources for s in r.scopes})
    return {
        "issuer": issuer,
        "token_endpoint": services.token_endpoint,
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt",
        ],
        "token_types_supported": [
            "urn:ietf:params:oauth:token-type:access_token",
            "urn:ietf:params:oauth:token-type:id_token",
            "urn:ietf:params:oauth:token-type:jwt",
        ],
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),  # RFC 9449 §5.1
    }


@router.get("/.well-known/oauth-authorization-server", tags=["discovery"])
async def metadata(request: Request) -> JSONResponse:
    return JSONResponse(build_metadata(_services(request)),
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/jwks.json", tags=["discovery"])
async def jwks(request: Request) -> JSONResponse:
    services = _services(request)
    now = services.clock()
    return JSONResponse(services.keyring.current(now).jwks(now),
                        headers={"Cache-Control": "public, max-age=60"})


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(request: Request) -> JSONResponse:
    services = _services(request)
    checks = {"redis": services.redis_health.ping(), "cerbos": services.pdp.ping()}
    results = await asyncio.gather(*checks.values(), return_exceptions=True)
    status = {
        name: "ok" if result is None else "unavailable"
        for name, result in zip(checks, results, strict=True)
    }
    for result in results:
        if result is not None and not isinstance(result, DependencyUnavailable):
            raise result
    ready = all(v == "ok" for v in status.values())
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": status},
                        status_code=200 if ready else 503)


@router.get("/metrics", tags=["operations"])
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
