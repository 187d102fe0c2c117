"""DPoP nonces at the broker (RFC 9449 §8), on real parts: a broker with `dpop_nonce_secret`
asks for a nonce it issued before it mints, and the agent's helper answers by itself."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import CRM, Broker, BrokerFactory
from tests.security.conftest import SECRETS, Server, security_overrides
from tests.security.dpop_support import (
    dpop_agents,
    exchange,
    is_invalid_dpop_proof,
    token_endpoint,
)
from tests.support.dpop import DPoPKey

NONCE_SECRET = "a-nonce-secret-of-at-least-32-bytes!"


@pytest.fixture(scope="module")
def nonce_broker(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                 oidc_issuer: str, trusted_idp: Server) -> Broker:
    return start_broker(redis_url=redis_url, cerbos_address=cerbos_address,
                        dpop_nonce_secret=NONCE_SECRET,
                        **security_overrides(oidc_issuer, trusted_idp.url, agents=dpop_agents()))


def test_a_proof_without_the_brokers_nonce_gets_one_and_nothing_else(
        nonce_broker: Broker, id_tokens: dict[str, str]) -> None:
    key = DPoPKey.generate()
    asked = exchange(nonce_broker, id_tokens["alice"],
                     proof=key.proof("POST", token_endpoint(nonce_broker)))
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    assert "access_token" not in asked.json()
    assert asked.headers["cache-control"] == "no-store"
    nonce = asked.headers["dpop-nonce"]
    granted = exchange(nonce_broker, id_tokens["alice"],
                       proof=key.proof("POST", token_endpoint(nonce_broker), nonce=nonce))
    assert granted.status_code == 200, granted.text
    assert granted.json()["token_type"] == "DPoP" and granted.headers["dpop-nonce"]
    for made_up in ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
        stale = exchange(nonce_broker, id_tokens["alice"],
                         proof=key.proof("POST", token_endpoint(nonce_broker), nonce=made_up))
        assert stale.json()["error"] == "use_dpop_nonce"


def test_a_proof_wrong_otherwise_is_invalid_whatever_its_nonce(
        nonce_broker: Broker, id_tokens: dict[str, str]) -> None:
    key = DPoPKey.generate()
    nonce = exchange(nonce_broker, id_tokens["alice"],
                     proof=key.proof("POST", token_endpoint(nonce_broker))).headers["dpop-nonce"]
    wrong = exchange(nonce_broker, id_tokens["alice"],
                     proof=key.proof("GET", token_endpoint(nonce_broker), nonce=nonce))
    assert is_invalid_dpop_proof(wrong) and wrong.headers["dpop-nonce"] == nonce


def test_requests_without_a_proof_are_untouched_by_nonces(
        nonce_broker: Broker, id_tokens: dict[str, str]) -> None:
    plain = exchange(nonce_broker, id_tokens["alice"])
    assert plain.status_code == 200 and plain.json()["token_type"] == "Bearer"
    assert "dpop-nonce" not in plain.headers


def test_the_agent_helper_retries_with_the_nonce_and_keeps_it(
        nonce_broker: Broker, id_tokens: dict[str, str]) -> None:
    """Asked once for a nonce, the helper retries with it and keeps the broker's latest one
    with the key: the next exchange by that key is not asked again."""
    from broker.client import ClientCredentials, exchange_token_sync

    statuses: list[int] = []
    key = DPoPKey.generate()
    with httpx.Client(trust_env=False, timeout=10,
                      event_hooks={"response": [lambda r: statuses.append(r.status_code)]}
                      ) as http:
        for _ in range(2):
            granted = exchange_token_sync(
                token_endpoint(nonce_broker), subject_token=id_tokens["alice"],
                client=ClientCredentials("research-agent", SECRETS["research-agent"]),
                resource=CRM, scope="crm:read", dpop=key, http=http)
            assert granted.token_type == "DPoP" and granted.scopes == ("crm:read",)
    assert statuses == [400, 200, 200]
