"""Token exchange end to end: real uvicorn broker, real Redis, Cerbos and OIDC provider."""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
import redis

from tests.integration.conftest import (
    CRM,
    DOCS,
    SECRETS,
    SIGNER_KEY,
    Broker,
    basic,
    exchange_form,
)


def verify_with_jwks(broker: Broker, token: str, audience: str = CRM) -> dict:
    """Verify as an outside resource server would: from the published JWKS only."""
    with broker.client() as http:
        jwks = http.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
    return jwt.decode(token, key, algorithms=["EdDSA", "ES256"], audience=audience,
                      issuer=broker.url)


def exchange(broker: Broker, form: dict, headers: dict | None = None):
    with broker.client() as http:
        return http.post("/oauth2/token", data=form, headers=headers or {})


def test_exchange_grants_the_intersection_and_records_the_session(
        broker: Broker, id_tokens: dict, redis_url: str) -> None:
    response = exchange(broker, exchange_form(id_tokens["alice"],
                                              scope="crm:read crm:write crm:delete"),
                        basic("research-agent"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["scope"] == "crm:read crm:write"  # a sales_rep may not delegate delete
    assert 0 < body["expires_in"] <= 300

    claims = verify_with_jwks(broker, body["access_token"])
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "research-agent"
    assert claims["act"] == {"sub": "research-agent"}
    assert claims["roles"] == ["sales_rep"]
    assert claims["scope"] == "crm:read crm:write"
    assert {"sid", "jti", "iat", "nbf", "exp"} <= claims.keys()

    raw = redis.Redis.from_url(redis_url).get(f"ab:session:{claims['sid']}")
    session = json.loads(raw)
    assert session["scopes_granted"] == ["crm:read", "crm:write"]
    assert session["scopes_dropped"] == [{"scope": "crm:delete",
                                          "reason": "not_delegable_by_user"}]
    assert session["agent"] == "research-agent" and session["subject"] == "alice"
    assert session["parent_sid"] is None and session["resource"] == CRM


def test_without_scope_the_declared_wildcards_expand_against_the_catalog(
        broker: Broker, id_tokens: dict) -> None:
    body = exchange(broker, exchange_form(id_tokens["carol"]), basic("research-agent")).json()
    # carol is crm_admin without a verified email: crm:* (read write delete export) but no email
    assert body["scope"] == "crm:delete crm:export crm:read crm:write"


def test_redelegation_narrows_nests_act_and_introspects(broker: Broker, id_tokens: dict) -> None:
    parent = exchange(broker, exchange_form(id_tokens["alice"]), basic("research-agent")).json()
    form = exchange_form(parent["access_token"], scope="crm:read crm:write",
                         subject_token_type="urn:ietf:params:oauth:token-type:access_token",
                         client_id="summarizer-agent",
                         client_secret=SECRETS["summarizer-agent"])
    child = exchange(broker, form)
    assert child.status_code == 200, child.text
    assert child.json()["scope"] == "crm:read"
    claims = verify_with_jwks(broker, child.json()["access_token"])
    assert claims["act"] == {"sub": "summarizer-agent", "act": {"sub": "research-agent"}}
    parent_claims = verify_with_jwks(broker, parent["access_token"])
    assert claims["exp"] <= parent_claims["exp"]
    assert claims["sid"] != parent_claims["sid"]

    with broker.client() as http:
        active = http.post("/oauth2/introspect", data={"token": child.json()["access_token"]},
                           headers=basic("crm-server")).json()
        garbage = http.post("/oauth2/introspect", data={"token": "x.y.z"},
                            headers=basic("crm-server")).json()
    assert active["active"] is True and active["act"] == claims["act"]
    assert garbage == {"active": False}


def test_depth_cap_and_may_delegate_to_are_enforced(broker: Broker, id_tokens: dict) -> None:
    one = exchange(broker, exchange_form(id_tokens["alice"]), basic("research-agent")).json()
    form = exchange_form(one["access_token"], client_id="summarizer-agent",
                         subject_token_type="urn:ietf:params:oauth:token-type:access_token",
                         client_secret=SECRETS["summarizer-agent"])
    two = exchange(broker, form).json()
    three = exchange(broker, {**exchange_form(two["access_token"]),
                              "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                              **assertion_form()})
    assert three.status_code == 400
    assert three.json()["error"] == "invalid_grant"  # max_delegation_depth is 2
    not_allowed = exchange(broker, {
        **exchange_form(one["access_token"]), **assertion_form(),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    assert not_allowed.json()["error"] == "invalid_grant"  # signer not in research's list


def assertion_form(jti: str | None = None, audience: str | None = None) -> dict[str, str]:
    now = int(time.time())
    return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode(
                {"iss": "signer-agent", "sub": "signer-agent", "aud": audience or AUD[0],
                 "iat": now, "exp": now + 60, "jti": jti or uuid.uuid4().hex},
                SIGNER_KEY, algorithm="EdDSA", headers={"kid": "signer-1"})}


AUD: list[str] = []


@pytest.fixture(autouse=True)
def _assertion_audience(broker: Broker) -> None:
    AUD[:] = [f"{broker.url}/oauth2/token"]


def test_private_key_jwt_is_single_use(broker: Broker, id_tokens: dict) -> None:
    auth = assertion_form()
    first = exchange(broker, {**exchange_form(id_tokens["alice"], resource=DOCS), **auth})
    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "docs:read"
    replay = exchange(broker, {**exchange_form(id_tokens["alice"], resource=DOCS), **auth})
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"


def test_metadata_jwks_and_health(broker: Broker) -> None:
    with broker.client() as http:
        meta = http.get("/.well-known/oauth-authorization-server").json()
        keys = http.get("/.well-known/jwks.json").json()["keys"]
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        metrics = http.get("/metrics").text
    assert meta["issuer"] == broker.url
    assert meta["token_endpoint"] == f"{broker.url}/oauth2/token"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in meta["grant_types_supported"]
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert keys and all(k["alg"] in ("EdDSA", "ES256") and "d" not in k for k in keys)
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "cerbos": "ok"}
    assert "agent_broker_exchanges_total" in metrics
