"""A real broker (uvicorn, real Redis, real Cerbos, real OIDC provider) configured for tests."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from broker.config import BrokerSettings
from broker.http.app import create_app
from broker.secrets import hash_secret
from tests.support.asgi import serve_in_thread
from tests.support.oidc import oidc_login
from tests.support.services import free_port

CRM = "http://127.0.0.1:8401/mcp"
DOCS = "http://127.0.0.1:8409/mcp"
SECRETS = {"research-agent": "research-secret-0123456789abcdef",
           "summarizer-agent": "summarizer-secret-0123456789abcd",
           "crm-server": "crm-server-secret-0123456789abcd"}
USERS: dict[str, dict[str, Any]] = {
    "alice": {"roles": ["sales_rep"], "email": "alice@example.com", "email_verified": True},
    "bob": {"roles": ["support"], "email": "bob@example.com", "email_verified": True},
    "carol": {"roles": ["crm_admin"], "email": "carol@example.com", "email_verified": False},
}
SIGNER_KEY = ed25519.Ed25519PrivateKey.generate()


def _hash(name: str) -> str:
    return hash_secret(SECRETS[name], ln=12)  # cheaper for tests; format and checks identical


def broker_config(issuer: str, *, redis_url: str, cerbos_address: str, oidc_issuer: str,
                  keys_file: Path, **over: Any) -> dict[str, Any]:
    signer_jwk = {**OKPAlgorithm.to_jwk(SIGNER_KEY.public_key(), as_dict=True), "kid": "signer-1"}
    return {
        "issuer": issuer, "redis_url": redis_url, "max_delegation_depth": 2,
        "cerbos": {"address": cerbos_address, "timeout_ms": 1000},
        "signing": {"keys_file": str(keys_file)},
        "upstream_issuers": [{"issuer": oidc_issuer, "audiences": ["agent-host"]}],
        "resources": [
            {"uri": CRM, "scopes": ["crm:read", "crm:write", "crm:delete", "crm:export",
                                    "email:send"],
             "client_id": "crm-server",
             "auth": {"method": "client_secret_basic", "secret_hash": _hash("crm-server")}},
            {"uri": DOCS, "scopes": ["docs:read"]},
        ],
        "agents": [
            {"client_id": "research-agent",
             "auth": {"method": "client_secret_basic", "secret_hash": _hash("research-agent")},
             "scopes": ["crm:*", "email:send"], "resources": [CRM],
             "may_delegate_to": ["summarizer-agent"]},
            {"client_id": "summarizer-agent",
             "auth": {"method": "client_secret_post", "secret_hash": _hash("summarizer-agent")},
             "scopes": ["crm:read"], "resources": [CRM], "may_delegate_to": ["signer-agent"]},
            {"client_id": "signer-agent",
             "auth": {"method": "private_key_jwt", "jwks": {"keys": [signer_jwk]}},
             "scopes": ["crm:read", "docs:read"], "resources": [CRM, DOCS]},
        ],
        **over,
    }


@dataclass
class Broker:
    url: str
    settings: BrokerSettings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, trust_env=False, timeout=10)


BrokerFactory = Callable[..., Broker]


@pytest.fixture(scope="session")
def start_broker(tmp_path_factory: pytest.TempPathFactory, oidc_issuer: str
                 ) -> Iterator[BrokerFactory]:
    """Start a broker process-in-thread; overrides (redis_url, cerbos...) for fault tests."""
    with ExitStack() as stack:
        def start(*, redis_url: str, cerbos_address: str, **over: Any) -> Broker:
            port = free_port()
            issuer = f"http://127.0.0.1:{port}"
            keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
            settings = BrokerSettings(**broker_config(
                issuer, redis_url=redis_url, cerbos_address=cerbos_address,
                oidc_issuer=oidc_issuer, keys_file=keys_file, **over))
            url = stack.enter_context(serve_in_thread(create_app(settings), port=port))
            return Broker(url, settings)

        yield start


@pytest.fixture(scope="session")
def broker(start_broker: BrokerFactory, redis_url: str, cerbos_address: str) -> Broker:
    return start_broker(redis_url=redis_url, cerbos_address=cerbos_address)


@pytest.fixture(scope="session")
def id_tokens(oidc_issuer: str) -> dict[str, str]:
    """Real RS256 ID tokens from the provider, one per demo user."""
    return {sub: oidc_login(oidc_issuer, sub, claims=claims).id_token
            for sub, claims in USERS.items()}


def basic(client_id: str) -> dict[str, str]:
    raw = f"{client_id}:{SECRETS[client_id]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def exchange_form(subject_token: str, resource: str = CRM, **extra: str) -> dict[str, str]:
    return {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": subject_token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "resource": resource, **extra}
