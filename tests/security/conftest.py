"""The parts the attacks are aimed at, all real: a broker (Redis, Cerbos, the dev OIDC provider),
the demo CRM protected by mcp_plugin, a second upstream IdP whose signing key the tests hold
(so a test can sign a token exactly as a trusted IdP would and change one thing), and an
attacker's web server that records every request: no verifier may ever fetch from it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from broker.config import BrokerSettings
from broker.keys import KeyringFile
from broker.secrets import hash_secret
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with integration
    CRM,
    DOCS,
    SIGNER_KEY,
    Broker,
    BrokerFactory,
    broker_config,
    id_tokens,
    start_broker,
)
from tests.integration.conftest import SECRETS as BASE_SECRETS
from tests.support.asgi import serve_in_thread
from tests.support.jose import RSA_KEY, SigningKey, jwks_of
from tests.support.mcp import initialize_status, served_crm

SECRETS = {**BASE_SECRETS, "helper-agent": "helper-secret-0123456789abcdef01",
           "deep-agent": "deep-secret-0123456789abcdef0123"}
SIGNER = SigningKey(SIGNER_KEY, "EdDSA", "signer-1")
SIGNER_TWO = SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA", "signer-2")
IDP_KEY = RSA_KEY
IDP_AUDIENCE = "agent-host"

@dataclass
class Server:
    """A served Starlette app that records the path of every request it gets."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    documents: dict[str, Any] = field(default_factory=dict)


def _recording_app(server: Server) -> Starlette:
    async def anything(request: Request) -> Response:
        server.hits.append(request.url.path)
        document = server.documents.get(request.url.path)
        if document is None:
            return PlainTextResponse("not found", status_code=404)
        if isinstance(document, str):
            return PlainTextResponse(document)
        return JSONResponse(document)

    return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


@pytest.fixture(scope="session")
def attacker() -> Iterator[Server]:
    """The attacker's server: `jku`, `x5u`, URL-shaped `kid`s and rogue issuers point here.

    It serves what a naive verifier would need to accept the forged tokens (key sets with the
    attacker's keys, copies of the real keys, OIDC discovery), so the only defence left is
    never to fetch: `hits` must stay empty.
    """
    server = Server()
    with serve_in_thread(_recording_app(server)) as url:
        server.url = url
        server.documents["/.well-known/openid-configuration"] = {
            "issuer": url, "jwks_uri": f"{url}/jwks"}
        server.documents["/jwks"] = {"keys": []}
        server.documents["/jwks-real"] = {"keys": []}
        yield server


@pytest.fixture(scope="session")
def trusted_idp() -> Iterator[Server]:
    """An upstream issuer the broker trusts, whose RS256 signing key (IDP_KEY) the tests hold."""
    server = Server()
    with serve_in_thread(_recording_app(server)) as url:
        server.url = url
        server.documents["/.well-known/openid-configuration"] = {
            "issuer": url, "jwks_uri": f"{url}/jwks"}
        server.documents["/jwks"] = jwks_of(IDP_KEY)
        yield server


def _secret_auth(name: str, method: str) -> dict[str, str]:
    return {"method": method, "secret_hash": hash_secret(SECRETS[name], ln=12)}


def _pkjwt(key: SigningKey) -> dict[str, Any]:
    return {"method": "private_key_jwt", "jwks": jwks_of(key)}


def security_agents() -> list[dict[str, Any]]:
    """The integration agents plus two for chains: research -> helper -> deep -> summarizer."""
    crm_all = ["crm:*"]
    return [
        {"client_id": "research-agent", "auth": _secret_auth("research-agent",
                                                             "client_secret_basic"),
         "scopes": ["crm:*", "email:send"], "resources": [CRM],
         "may_delegate_to": ["summarizer-agent", "helper-agent"]},
        {"client_id": "summarizer-agent", "auth": _secret_auth("summarizer-agent",
                                                               "client_secret_post"),
         "scopes": ["crm:read"], "resources": [CRM], "may_delegate_to": ["signer-agent"]},
        {"client_id": "signer-agent", "auth": _pkjwt(SIGNER),
         "scopes": ["crm:read", "docs:read"], "resources": [CRM, DOCS]},
        {"client_id": "signer-two", "auth": _pkjwt(SIGNER_TWO),
         "scopes": ["crm:read", "docs:read"], "resources": [CRM, DOCS]},
        {"client_id": "helper-agent", "auth": _secret_auth("helper-agent", "client_secret_post"),
         "scopes": crm_all, "resources": [CRM],
         "may_delegate_to": ["research-agent", "deep-agent"]},
        {"client_id": "deep-agent", "auth": _secret_auth("deep-agent", "client_secret_post"),
         "scopes": crm_all, "resources": [CRM], "may_delegate_to": ["summarizer-agent"]},
    ]


def security_overrides(oidc_issuer: str, idp_url: str, **over: Any) -> dict[str, Any]:
    return {
        "redis_key_prefix": f"sec{uuid.uuid4().hex[:8]}:",
        "max_delegation_depth": 3,
        # above the subject-token cap (16 KiB), so that cap is what an oversized token meets
        "max_request_bytes": 65_536,
        "upstream_issuers": [{"issuer": oidc_issuer, "audiences": [IDP_AUDIENCE]},
                             {"issuer": idp_url, "audiences": [IDP_AUDIENCE]}],
        "agents": security_agents(),
        # the attack battery fails client authentication on purpose, many times
        "rate_limits": {"failed_auth_per_client": 10_000, "failed_auth_per_ip": 10_000},
        **over,
    }


@pytest.fixture(scope="session")
def sec_broker(start_broker: BrokerFactory, redis_url: str,  # noqa: F811
               cerbos_address: str, oidc_issuer: str, trusted_idp: Server) -> Broker:
    return start_broker(redis_url=redis_url, cerbos_address=cerbos_address,
                        **security_overrides(oidc_issuer, trusted_idp.url))


def broker_signing_key(settings: BrokerSettings) -> SigningKey:
    """The broker's current signing key, read from its keys file as the broker reads it."""
    ring = KeyringFile(settings.signing.keys_file, settings.signing.algorithm,
                       max_token_ttl=settings.token_ttl_seconds, grace=600).current(time.time())
    key = ring.signing_key(time.time())
    return SigningKey(key.private_key, key.alg, key.kid)


@pytest.fixture(scope="session")
def crm_url(sec_broker: Broker, cerbos_address: str) -> Iterator[str]:
    """The demo CRM behind mcp_plugin, trusting `sec_broker`, known to it as resource CRM."""
    with served_crm(broker=sec_broker.url, cerbos=cerbos_address, resource=CRM) as url:
        yield url


mcp_status = initialize_status


def post_form(broker: Broker, path: str, form: dict[str, str],
              headers: dict[str, str] | None = None) -> httpx.Response:
    with broker.client() as http:
        return http.post(path, data=form, headers=headers or {})
