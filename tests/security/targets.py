"""The four places that validate JWTs, each as a `forge.Target`: what a valid token looks like
for it, the key it trusts, and how a token is presented to it over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from tests.integration.conftest import CRM, DOCS, Broker, basic, exchange_form
from tests.security.conftest import (
    IDP_AUDIENCE,
    IDP_KEY,
    SECRETS,
    SIGNER,
    Server,
    broker_signing_key,
    mcp_status,
    post_form,
)
from tests.security.forge import Outcome, Target, attacker_key_like

LEEWAY = 30  # the broker's clock_leeway_seconds default and the plugin's maximum, both 30 s
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
WIDE_SCOPE = "crm:read crm:write crm:delete crm:export email:send"


def _outcome(response: Any) -> Outcome:
    error = None
    if response.status_code != 200 and "json" in response.headers.get("content-type", ""):
        error = response.json().get("error")
    return Outcome(response.status_code, error)


def _publish_attacker_key(attacker: Server, target: Target) -> None:
    """Let the attacker's server offer the keys a naive verifier would pick up."""
    attacker.documents["/jwks"]["keys"].append(target.attacker.jwk())
    attacker.documents["/jwks-real"]["keys"].append(target.key.jwk())


def plugin_target(broker: Broker, crm_url: str, attacker: Server) -> Target:
    """BrokerTokenVerifier in the served demo CRM: trusts the broker's real signing key."""
    key = broker_signing_key(broker.settings)

    def claims() -> dict[str, Any]:
        now = int(time.time())
        return {"iss": broker.url, "sub": "alice", "aud": CRM, "client_id": "research-agent",
                "scope": "crm:read", "act": {"sub": "research-agent"}, "roles": ["sales_rep"],
                "sid": uuid.uuid4().hex, "jti": uuid.uuid4().hex, "iat": now, "nbf": now,
                "exp": now + 300}

    target = Target(
        name="plugin", key=key, attacker=attacker_key_like(key), claims=claims, typ="at+jwt",
        wrong_typ="JWT", max_length=8192, leeway=LEEWAY, escalate={"scope": WIDE_SCOPE},
        present=lambda token: Outcome(mcp_status(crm_url, token)),
        accepted=Outcome(200), refused=frozenset({Outcome(401)}),
    )
    _publish_attacker_key(attacker, target)
    return target


def upstream_target(broker: Broker, idp: Server, attacker: Server) -> Target:
    """The broker's subject-token validation for an upstream IdP whose key the test holds."""

    def claims() -> dict[str, Any]:
        now = int(time.time())
        return {"iss": idp.url, "sub": "sec-user", "aud": IDP_AUDIENCE, "iat": now,
                "exp": now + 600, "roles": ["sales_rep"]}

    def present(token: str) -> Outcome:
        return _outcome(post_form(broker, "/oauth2/token",
                                  exchange_form(token, scope="crm:read"),
                                  basic("research-agent")))

    target = Target(
        name="upstream", key=IDP_KEY, attacker=attacker_key_like(IDP_KEY), claims=claims,
        typ="JWT", wrong_typ="secevent+jwt", max_length=16 * 1024, leeway=LEEWAY,
        escalate={"roles": ["crm_admin"]}, present=present, accepted=Outcome(200),
        refused=frozenset({Outcome(400, "invalid_grant")}), typ_required=False,
    )
    _publish_attacker_key(attacker, target)
    return target


def redelegation_target(broker: Broker, id_token: str, attacker: Server) -> Target:
    """The broker's validation of its own agent tokens as subject tokens (re-delegation).

    The claims are those of a real parent token, whose session is live in Redis, so a forged
    token meets the header and signature checks, not a missing session.
    """
    parent = post_form(broker, "/oauth2/token", exchange_form(id_token, scope="crm:read"),
                       basic("research-agent"))
    assert parent.status_code == 200, parent.text
    parent_claims = jwt.decode(parent.json()["access_token"], options={"verify_signature": False})
    key = broker_signing_key(broker.settings)

    def present(token: str) -> Outcome:
        form = exchange_form(token, subject_token_type=ACCESS_TOKEN, scope="crm:read",
                             client_id="summarizer-agent",
                             client_secret=SECRETS["summarizer-agent"])
        return _outcome(post_form(broker, "/oauth2/token", form))

    target = Target(
        name="redelegation", key=key, attacker=attacker_key_like(key),
        claims=lambda: dict(parent_claims), typ="at+jwt", wrong_typ="JWT", max_length=8192,
        leeway=LEEWAY, escalate={"scope": WIDE_SCOPE}, present=present, accepted=Outcome(200),
        # a token for another audience is refused as a target mismatch (re-delegation keeps
        # the parent's resource), everything else as a bad subject token
        refused=frozenset({Outcome(400, "invalid_grant"), Outcome(400, "invalid_target")}),
    )
    _publish_attacker_key(attacker, target)
    return target


def assertion_target(broker: Broker, id_token: str, attacker: Server) -> Target:
    """`private_key_jwt` client assertions of signer-agent (RFC 7523)."""

    def claims() -> dict[str, Any]:
        now = int(time.time())
        return {"iss": "signer-agent", "sub": "signer-agent",
                "aud": f"{broker.url}/oauth2/token", "iat": now, "exp": now + 60,
                "jti": uuid.uuid4().hex}

    def present(token: str) -> Outcome:
        form = {**exchange_form(id_token, resource=DOCS, scope="docs:read"),
                "client_assertion_type":
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": token}
        return _outcome(post_form(broker, "/oauth2/token", form))

    target = Target(
        name="client-assertion", key=SIGNER, attacker=attacker_key_like(SIGNER), claims=claims,
        typ=None, wrong_typ="at+jwt", max_length=8192, leeway=LEEWAY,
        escalate={"jti": uuid.uuid4().hex}, present=present, accepted=Outcome(200),
        refused=frozenset({Outcome(401, "invalid_client")}), typ_required=False,
    )
    _publish_attacker_key(attacker, target)
    return target
