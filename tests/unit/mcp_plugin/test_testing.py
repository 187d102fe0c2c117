"""mcp_plugin.testing mints what the broker mints (contract §5) and serves it over HTTP."""

from __future__ import annotations

import httpx
import jwt
import pytest

from mcp_plugin import BrokerTokenVerifier
from mcp_plugin.claims import REQUIRED_CLAIMS
from mcp_plugin.testing import BrokerTokenFactory, TestKeyPair, build_act, run_broker

RESOURCE = "http://127.0.0.1:8401/mcp"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_minted_tokens_have_the_contract_shape(alg: str) -> None:
    key = TestKeyPair.generate(alg)
    factory = BrokerTokenFactory("http://broker.test", keys=[key], audience=RESOURCE)
    token = factory.mint(actors=["summarizer", "research-agent"], roles=["sales_rep"])
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "typ": "at+jwt", "kid": key.kid}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(REQUIRED_CLAIMS) | {"nbf", "roles"} == set(claims)
    assert claims["client_id"] == "summarizer"
    assert claims["act"] == {"sub": "summarizer", "act": {"sub": "research-agent"}}
    assert claims["exp"] - claims["iat"] == 300
    assert key.public_jwk()["kid"] == key.kid


def test_act_nesting() -> None:
    assert build_act(["c", "b", "a"]) == {"sub": "c", "act": {"sub": "b", "act": {"sub": "a"}}}
    with pytest.raises(ValueError, match="at least one actor"):
        build_act([])


def test_only_broker_algorithms() -> None:
    with pytest.raises(ValueError, match="EdDSA or ES256"):
        TestKeyPair.generate("RS256")


async def test_run_broker_serves_metadata_and_jwks_over_http() -> None:
    with run_broker(audience=RESOURCE) as broker:
        async with httpx.AsyncClient() as http:
            metadata = (await http.get(
                f"{broker.issuer}/.well-known/oauth-authorization-server")).json()
        assert metadata["issuer"] == broker.issuer
        verifier = BrokerTokenVerifier(broker=broker.issuer, resource=RESOURCE)
        assert await verifier.verify_token(broker.tokens.mint()) is not None
        await verifier.keys.aclose()
    assert broker.jwks_requests == 1
