"""Real tokens for the bench: ID tokens from the OIDC provider, agent tokens from the broker.

Each exchange opens a new broker session (a fresh `sid`), which is what a revocation trial
needs. The sid and jti are read from the token's payload without verifying it: the bench
minted it a moment ago from its own broker, and the MCP servers verify it for real.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import jwt

from tests.integration.conftest import CRM, basic, exchange_form
from tests.integration.revocation_support import ADMIN_AUDIENCE
from tests.support.oidc import oidc_login


@dataclass(frozen=True)
class Minted:
    token: str
    sid: str
    jti: str


def user_id_token(oidc_issuer: str) -> str:
    """A fresh sales rep's ID token for the agent host (the subject of every exchange)."""
    sub = f"bench-{uuid.uuid4().hex[:10]}"
    return oidc_login(oidc_issuer, sub, claims={"roles": ["sales_rep"]}).id_token


def admin_id_token(oidc_issuer: str) -> str:
    """An admin's bearer token for the broker's /admin API (audience ADMIN_AUDIENCE)."""
    return oidc_login(oidc_issuer, "bench-admin", client_id=ADMIN_AUDIENCE,
                      claims={"roles": ["admin"]}).id_token


async def mint(broker: httpx.AsyncClient, id_token: str) -> Minted:
    """research-agent exchanges the user's ID token for a crm:read token: one new session."""
    response = await broker.post("/oauth2/token", data=exchange_form(id_token, CRM,
                                                                     scope="crm:read"),
                                 headers=basic("research-agent"))
    if response.status_code != 200:
        raise RuntimeError(f"token exchange failed: {response.status_code} {response.text}")
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    return Minted(token, claims["sid"], claims["jti"])


def broker_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, trust_env=False, timeout=10)
