"""Sender-constrained tokens (RFC 9449) under attack, on real parts: a broker with one
`dpop_bound` agent (deep-agent), Redis, Cerbos, and the demo CRM behind mcp_plugin.

The CRM is served at a free port but known to the broker (and to itself) as CRM: the URI a
reverse proxy would publish. Proofs must name that URI, never the address uvicorn saw.
The claim under test: a stolen DPoP-bound token is useless, at the broker and at the server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.integration.conftest import CRM, Broker, BrokerFactory, basic, exchange_form
from tests.security.conftest import Server, post_form, security_overrides
from tests.security.dpop_support import (
    dpop_agents,
    exchange,
    is_invalid_dpop_proof,
    token_endpoint,
)
from tests.support.dpop import (
    DPoPKey,
    forged_proof,
    private_jwk,
    proof_claims,
    public_jwk,
    unsigned_proof,
)
from tests.support.mcp import INITIALIZE, MCP_HEADERS, served_crm

ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module")
def dpop_broker(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                oidc_issuer: str, trusted_idp: Server) -> Broker:
    return start_broker(redis_url=redis_url, cerbos_address=cerbos_address,
                        **security_overrides(oidc_issuer, trusted_idp.url, agents=dpop_agents()))


@pytest.fixture(scope="module")
def crm(dpop_broker: Broker, cerbos_address: str) -> Iterator[str]:
    with served_crm(broker=dpop_broker.url, cerbos=cerbos_address, resource=CRM) as url:
        yield url


@pytest.fixture(scope="module")
def crm_replicas(dpop_broker: Broker, cerbos_address: str, redis_url: str
                 ) -> Iterator[tuple[str, str]]:
    """Two replicas of the CRM behind the one URI CRM, on the broker's Redis (and prefix)."""
    options = {"broker": dpop_broker.url, "cerbos": cerbos_address, "resource": CRM,
               "redis_url": redis_url,
               "revocation_key_prefix": dpop_broker.settings.redis_key_prefix}
    with served_crm(**options) as replica_a, served_crm(**options) as replica_b:
        yield replica_a, replica_b


@pytest.fixture(scope="module")
def strict_crm(dpop_broker: Broker, cerbos_address: str) -> Iterator[str]:
    with served_crm(broker=dpop_broker.url, cerbos=cerbos_address, resource=CRM,
                    dpop_required=True) as url:
        yield url


def bound_token(broker: Broker, id_token: str, key: DPoPKey, agent: str = "research-agent"
                ) -> str:
    response = exchange(broker, id_token, agent=agent,
                        proof=key.proof("POST", token_endpoint(broker)))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    token: str = response.json()["access_token"]
    return token


def call_crm(url: str, token: str, *, scheme: str = "DPoP", proof: str | None = None
             ) -> httpx.Response:
    headers = {**MCP_HEADERS, "Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return httpx.post(url, json=INITIALIZE, headers=headers, trust_env=False, timeout=10)


# The broker


def test_metadata_advertises_the_proof_algorithms(dpop_broker: Broker) -> None:
    with dpop_broker.client() as http:
        metadata = http.get("/.well-known/oauth-authorization-server").json()
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]


def test_a_dpop_bound_agent_without_a_proof_gets_nothing(dpop_broker: Broker,
                                                         id_tokens: dict[str, str]) -> None:
    assert is_invalid_dpop_proof(exchange(dpop_broker, id_tokens["alice"], agent="deep-agent"))
    key = DPoPKey.generate()
    claims = jwt.decode(bound_token(dpop_broker, id_tokens["alice"], key, agent="deep-agent"),
                        options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.thumbprint}


def test_an_unbound_agent_may_still_bind_its_token(dpop_broker: Broker,
                                                   id_tokens: dict[str, str]) -> None:
    plain = exchange(dpop_broker, id_tokens["alice"])
    assert plain.json()["token_type"] == "Bearer"
    assert "cnf" not in jwt.decode(plain.json()["access_token"],
                                   options={"verify_signature": False})
    key = DPoPKey.generate("ES256")
    claims = jwt.decode(bound_token(dpop_broker, id_tokens["alice"], key),
                        options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": key.thumbprint}


ATTACKER = ed25519.Ed25519PrivateKey.generate()


def _claims(endpoint: str, **over: Any) -> dict[str, Any]:
    return proof_claims("POST", endpoint, **over)


# Each makes a bad proof for the broker's token endpoint.
BAD_BROKER_PROOFS = [
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e, htm="GET")), id="wrong-htm"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e, htu=e.replace(
        "/oauth2/token", "/oauth2/revoke"))), id="wrong-htu"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e, iat=int(time.time()) - 3600)),
                 id="stale-iat"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e, iat=int(time.time()) + 3600)),
                 id="future-iat"),
    pytest.param(lambda e: unsigned_proof({"typ": "dpop+jwt", "alg": "none",
                                           "jwk": public_jwk(ATTACKER)}, _claims(e)),
                 id="alg-none"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e), alg="HS256", key=b"k" * 32),
                 id="hs256"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e), jwk=private_jwk(ATTACKER)),
                 id="private-key-in-jwk"),
    pytest.param(lambda e: forged_proof(ATTACKER, _claims(e), typ="JWT"), id="wrong-typ"),
]


@pytest.mark.parametrize("make", BAD_BROKER_PROOFS)
def test_the_broker_refuses_bad_proofs(dpop_broker: Broker, id_tokens: dict[str, str],
                                       make: Any) -> None:
    response = exchange(dpop_broker, id_tokens["alice"], proof=make(token_endpoint(dpop_broker)))
    assert is_invalid_dpop_proof(response), response.text


def test_the_broker_wants_exactly_one_proof(dpop_broker: Broker,
                                            id_tokens: dict[str, str]) -> None:
    key = DPoPKey.generate()
    fields = {**exchange_form(id_tokens["alice"], scope="crm:read")}
    proofs = [("DPoP", key.proof("POST", token_endpoint(dpop_broker))) for _ in range(2)]
    with dpop_broker.client() as http:
        response = http.post("/oauth2/token", data=fields,
                             headers=[*basic("research-agent").items(), *proofs])
    assert is_invalid_dpop_proof(response)


def test_a_proof_is_accepted_once_across_broker_processes(
        dpop_broker: Broker, start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
        oidc_issuer: str, trusted_idp: Server, id_tokens: dict[str, str]) -> None:
    """Two brokers on one Redis (prefix): a proof spent at one is refused at the other. Each
    proof names its own broker's URI, so what refuses the second is the shared jti store."""
    other = start_broker(redis_url=redis_url, cerbos_address=cerbos_address,
                         **security_overrides(oidc_issuer, trusted_idp.url, agents=dpop_agents(),
                                              redis_key_prefix=dpop_broker.settings
                                              .redis_key_prefix))
    jti = uuid.uuid4().hex
    first = forged_proof(ATTACKER, proof_claims("POST", token_endpoint(dpop_broker), jti=jti))
    again = forged_proof(ATTACKER, proof_claims("POST", token_endpoint(other), jti=jti))
    assert exchange(dpop_broker, id_tokens["alice"], proof=first).status_code == 200
    assert is_invalid_dpop_proof(exchange(dpop_broker, id_tokens["alice"], proof=first))
    assert is_invalid_dpop_proof(exchange(other, id_tokens["alice"], proof=again))


@pytest.mark.parametrize("thief", ["no-proof", "own-key"])
def test_a_stolen_bound_token_cannot_be_redelegated(dpop_broker: Broker,
                                                    id_tokens: dict[str, str],
                                                    thief: str) -> None:
    """The thief holds a sub-agent's credentials too, and still gets no fresh token."""
    parent = bound_token(dpop_broker, id_tokens["alice"], DPoPKey.generate())
    proof = None if thief == "no-proof" else DPoPKey.generate().proof(
        "POST", token_endpoint(dpop_broker))
    response = exchange(dpop_broker, parent, proof=proof, agent="helper-agent",
                        subject_token_type=ACCESS_TOKEN)
    assert is_invalid_dpop_proof(response), response.text


def test_the_key_holder_redelegates_a_bound_token_and_the_child_stays_bound(
        dpop_broker: Broker, id_tokens: dict[str, str], crm: str) -> None:
    key = DPoPKey.generate()
    parent = bound_token(dpop_broker, id_tokens["alice"], key)
    response = exchange(dpop_broker, parent, agent="helper-agent",
                        subject_token_type=ACCESS_TOKEN,
                        proof=key.proof("POST", token_endpoint(dpop_broker)))
    assert response.status_code == 200, response.text
    child = response.json()["access_token"]
    assert jwt.decode(child, options={"verify_signature": False})["cnf"] == {
        "jkt": key.thumbprint}
    assert call_crm(crm, child, proof=key.proof("POST", CRM, access_token=child)
                    ).status_code == 200


def test_introspection_keeps_the_binding(dpop_broker: Broker,
                                         id_tokens: dict[str, str]) -> None:
    key = DPoPKey.generate()
    token = bound_token(dpop_broker, id_tokens["alice"], key)
    body = post_form(dpop_broker, "/oauth2/introspect", {"token": token},
                     basic("crm-server")).json()
    assert body["active"] is True and body["token_type"] == "DPoP"
    assert body["cnf"] == {"jkt": key.thumbprint}


# The MCP server


@pytest.fixture
def bound(dpop_broker: Broker, id_tokens: dict[str, str]) -> tuple[str, DPoPKey]:
    key = DPoPKey.generate()
    return bound_token(dpop_broker, id_tokens["alice"], key), key


def test_the_holder_of_the_key_is_served(crm: str, bound: tuple[str, DPoPKey]) -> None:
    token, key = bound
    assert call_crm(crm, token, proof=key.proof("POST", CRM, access_token=token)
                    ).status_code == 200


def test_a_stolen_token_with_the_thiefs_own_key_is_refused(
        crm: str, bound: tuple[str, DPoPKey]) -> None:
    token, _ = bound
    thief = DPoPKey.generate()
    refused = call_crm(crm, token, proof=thief.proof("POST", CRM, access_token=token))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_dpop_proof"


def test_a_bound_token_sent_as_bearer_is_refused(crm: str, bound: tuple[str, DPoPKey]) -> None:
    token, _ = bound
    refused = call_crm(crm, token, scheme="Bearer")
    assert refused.status_code == 401
    assert any(c.startswith("DPoP ") for c in refused.headers.get_list("www-authenticate"))


def test_a_replayed_proof_is_refused(crm: str, bound: tuple[str, DPoPKey]) -> None:
    token, key = bound
    proof = key.proof("POST", CRM, access_token=token)
    assert call_crm(crm, token, proof=proof).status_code == 200
    replayed = call_crm(crm, token, proof=proof)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_dpop_proof"


def test_a_proof_spent_at_one_replica_is_refused_at_another(
        crm_replicas: tuple[str, str], bound: tuple[str, DPoPKey]) -> None:
    """Both replicas accept proofs for CRM (the URI the proxy publishes), so only the shared
    `jti` store in Redis stops the proof captured at A from being replayed at B."""
    replica_a, replica_b = crm_replicas
    token, key = bound
    proof = key.proof("POST", CRM, access_token=token)
    assert call_crm(replica_a, token, proof=proof).status_code == 200
    replayed = call_crm(replica_b, token, proof=proof)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_dpop_proof"
    again = call_crm(replica_a, token, proof=proof)
    assert again.status_code == 401 and again.json()["error"] == "invalid_dpop_proof"
    assert call_crm(replica_b, token, proof=key.proof("POST", CRM, access_token=token)
                    ).status_code == 200


def test_a_proof_for_another_token_is_refused(crm: str, bound: tuple[str, DPoPKey],
                                              dpop_broker: Broker,
                                              id_tokens: dict[str, str]) -> None:
    """`ath` ties a proof to one token: a captured proof does not carry a stolen token."""
    token, key = bound
    other = bound_token(dpop_broker, id_tokens["alice"], key)
    refused = call_crm(crm, token, proof=key.proof("POST", CRM, access_token=other))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_dpop_proof"


def test_htu_is_the_published_uri_not_the_address_behind_the_proxy(
        crm: str, bound: tuple[str, DPoPKey]) -> None:
    token, key = bound
    refused = call_crm(crm, token, proof=key.proof("POST", crm, access_token=token))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_dpop_proof"


def test_unbound_tokens_still_work_as_bearer(crm: str, dpop_broker: Broker,
                                             id_tokens: dict[str, str]) -> None:
    token = exchange(dpop_broker, id_tokens["alice"]).json()["access_token"]
    assert call_crm(crm, token, scheme="Bearer").status_code == 200


def test_a_server_requiring_dpop_says_so_and_refuses_bearer_tokens(
        strict_crm: str, dpop_broker: Broker, id_tokens: dict[str, str],
        bound: tuple[str, DPoPKey]) -> None:
    base, path = strict_crm.rsplit("/", 1)
    metadata = httpx.get(f"{base}/.well-known/oauth-protected-resource/{path}",
                         trust_env=False).json()
    assert metadata["dpop_bound_access_tokens_required"] is True
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]
    plain = exchange(dpop_broker, id_tokens["alice"]).json()["access_token"]
    assert call_crm(strict_crm, plain, scheme="Bearer").status_code == 401
    token, key = bound
    assert call_crm(strict_crm, token, proof=key.proof("POST", CRM, access_token=token)
                    ).status_code == 200
