"""Helpers for revocation and admin tests: a broker with its own Redis key prefix and admins.

Each `RevocationStack` has a key prefix of its own, so an agent-wide revocation in one test
cannot refuse the subject tokens another test relies on; users are fresh per test for the
same reason (a user revocation refuses that user's earlier logins).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest

from tests.integration.conftest import (
    CRM,
    SECRETS,
    Broker,
    BrokerFactory,
    basic,
    exchange_form,
)
from tests.support.oidc import oidc_login

ADMIN_AUDIENCE = "broker-admin"


@dataclass
class Minted:
    token: str
    sid: str
    jti: str


@dataclass
class RevocationStack:
    broker: Broker
    oidc_issuer: str
    prefix: str

    def login(self, sub: str | None = None, roles: list[str] | None = None) -> tuple[str, str]:
        """A fresh user (unless `sub` is given) and their ID token for the agent host."""
        sub = sub or f"user-{uuid.uuid4().hex[:10]}"
        token = oidc_login(self.oidc_issuer, sub,
                           claims={"roles": roles or ["sales_rep"]}).id_token
        return sub, token

    def admin_token(self, sub: str = "root", roles: tuple[str, ...] = ("admin",)) -> str:
        return oidc_login(self.oidc_issuer, sub, client_id=ADMIN_AUDIENCE,
                          claims={"roles": list(roles)}).id_token

    def http(self) -> httpx.Client:
        return self.broker.client()

    def exchange(self, subject_token: str, agent: str = "research-agent", *,
                 token_type: str = "urn:ietf:params:oauth:token-type:id_token",
                 scope: str = "crm:read") -> httpx.Response:
        form = exchange_form(subject_token, CRM, scope=scope, subject_token_type=token_type)
        headers: dict[str, str] = {}
        if agent == "research-agent":
            headers = basic(agent)
        else:
            form |= {"client_id": agent, "client_secret": SECRETS[agent]}
        with self.http() as http:
            return http.post("/oauth2/token", data=form, headers=headers)

    def mint(self, subject_token: str, agent: str = "research-agent", **kw: Any) -> Minted:
        response = self.exchange(subject_token, agent, **kw)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        claims = self.introspect(token)
        assert claims["active"] is True
        return Minted(token, claims["sid"], claims["jti"])

    def delegate(self, parent: Minted, agent: str = "summarizer-agent") -> Minted:
        return self.mint(parent.token, agent,
                         token_type="urn:ietf:params:oauth:token-type:access_token")

    def introspect(self, token: str) -> dict[str, Any]:
        with self.http() as http:
            response = http.post("/oauth2/introspect", data={"token": token},
                                 headers=basic("crm-server"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def is_active(self, token: str) -> bool:
        return bool(self.introspect(token)["active"])

    def admin(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        with self.http() as http:
            return http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


def start_stack(start_broker: BrokerFactory, *, redis_url: str, cerbos_address: str,
                oidc_issuer: str, **over: Any) -> RevocationStack:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    broker = start_broker(redis_url=redis_url, cerbos_address=cerbos_address,
                          redis_key_prefix=prefix, admin={"audiences": [ADMIN_AUDIENCE]},
                          **over)
    return RevocationStack(broker, oidc_issuer, prefix)


def stack_fixture(scope: Literal["function", "module"] = "function") -> Any:
    """A `stack` fixture for a test module: each test (or the module) gets its own prefix.

    Function scope where tests revoke whole agents (a cutoff would reach the next test's
    logins); module scope where tests only revoke their own fresh users and sessions.
    """

    @pytest.fixture(scope=scope, name="stack")
    def _stack(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
               oidc_issuer: str) -> RevocationStack:
        return start_stack(start_broker, redis_url=redis_url, cerbos_address=cerbos_address,
                           oidc_issuer=oidc_issuer)

    return _stack
