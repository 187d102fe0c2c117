"""BrokerAuthentication over real loopback HTTP (a fake broker's keys, a scripted PDP): the
DPoP scheme for bound tokens, Bearer for the rest, and the challenges of each refusal."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from agent_broker_demo.crm_server import build_protected_server, build_server
from mcp_plugin import (
    BrokerAuthProvider,
    BrokerTokenVerifier,
    RedisProofReplayCache,
    StaticRevocations,
    protect,
)
from mcp_plugin.dpop_auth import MemoryProofReplayCache
from mcp_plugin.dpop_nonce import NonceIssuer
from mcp_plugin.testing import Endpoint, FakeBroker
from tests.support.dpop import DPoPKey, forged_proof, proof_claims
from tests.support.mcp import INITIALIZE, MCP_HEADERS
from tests.support.services import free_port
from tests.unit.mcp_plugin.test_authorization import ScriptedPDP

Served = tuple[str, FakeBroker]


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    stack: list[Any] = []

    def start(*, broker: FakeBroker | None = None, resource: str | None = None,
              **options: Any) -> Served:
        """A protected CRM on its own port; `resource` (default: that port's URL) and `broker`
        may be shared, to serve replicas of one server behind one URI."""
        endpoint = Endpoint()
        resource = resource or endpoint.url
        broker = broker or FakeBroker(audience=resource)
        options.setdefault("redis_url", None)
        mcp = build_protected_server(broker=broker.issuer, resource=resource,
                                     cerbos=ScriptedPDP(), http_client=broker.http_client(),
                                     **options)
        context = endpoint.serve(mcp.http_app(path=endpoint.path))
        context.__enter__()
        stack.append((context, endpoint))
        return endpoint.url, broker

    yield start
    for context, endpoint in reversed(stack):
        context.__exit__(None, None, None)
        endpoint.close()


def bound(broker: FakeBroker, key: DPoPKey) -> str:
    return broker.tokens.mint(claims={"cnf": {"jkt": key.thumbprint}})


def post(url: str, authorization: str, proof: str | None = None) -> httpx.Response:
    headers = {**MCP_HEADERS, "Authorization": authorization}
    if proof is not None:
        headers["DPoP"] = proof
    return httpx.post(url, json=INITIALIZE, headers=headers, trust_env=False, timeout=10)


def challenge(response: httpx.Response, scheme: str) -> str:
    found = [c for c in response.headers.get_list("www-authenticate")
             if c.startswith(f"{scheme} ")]
    assert len(found) == 1, response.headers
    return found[0]


def test_a_bound_token_with_its_proof_is_accepted(serve: Callable[..., Served]) -> None:
    url, broker = serve()
    key = DPoPKey.generate()
    token = bound(broker, key)
    response = post(url, f"DPoP {token}", key.proof("POST", url, access_token=token))
    assert response.status_code == 200, response.text


def test_a_bound_token_missing_a_scope_gets_the_step_up_challenge_in_the_dpop_scheme(
        serve: Callable[..., Served]) -> None:
    url, broker = serve()
    key = DPoPKey.generate()
    token = broker.tokens.mint(scopes=["crm:read"], claims={"cnf": {"jkt": key.thumbprint}})
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "update_contact", "arguments": {"contact_id": "1"}}}
    response = httpx.post(url, json=call, trust_env=False, timeout=10, headers={
        **MCP_HEADERS, "Authorization": f"DPoP {token}",
        "DPoP": key.proof("POST", url, access_token=token)})
    assert response.status_code == 403, response.text
    assert challenge(response, "DPoP").startswith(
        'DPoP error="insufficient_scope", scope="crm:write", algs="EdDSA ES256"')


def test_a_bound_token_sent_as_bearer_is_refused(serve: Callable[..., Served]) -> None:
    url, broker = serve()
    response = post(url, f"Bearer {bound(broker, DPoPKey.generate())}")
    assert response.status_code == 401
    assert challenge(response, "Bearer").startswith('Bearer error="invalid_token"')
    assert challenge(response, "DPoP") == (
        f'DPoP algs="EdDSA ES256", resource_metadata="{_metadata(url)}"')


def test_a_token_with_any_binding_is_not_a_bearer_token(serve: Callable[..., Served]) -> None:
    """A `cnf` this server cannot check (no `jkt`) is refused as Bearer too: fail closed."""
    url, broker = serve()
    token = broker.tokens.mint(claims={"cnf": {"x5t#S256": "bWFkZS11cA"}})
    assert post(url, f"Bearer {token}").status_code == 401


def test_unbound_tokens_keep_working_as_bearer_only(serve: Callable[..., Served]) -> None:
    url, broker = serve()
    token = broker.tokens.mint()
    assert post(url, f"Bearer {token}").status_code == 200
    key = DPoPKey.generate()
    refused = post(url, f"DPoP {token}", key.proof("POST", url, access_token=token))
    assert refused.status_code == 401
    assert challenge(refused, "DPoP").startswith('DPoP error="invalid_token"')


@pytest.mark.parametrize("bad", [
    pytest.param(lambda key, url, token: key.proof("GET", url, access_token=token), id="htm"),
    pytest.param(lambda key, url, token: key.proof("POST", url + "x", access_token=token),
                 id="htu-path"),
    pytest.param(lambda key, url, token: key.proof(
        "POST", url.replace("127.0.0.1", "localhost"), access_token=token), id="htu-host"),
    pytest.param(lambda key, url, token: key.proof("POST", url, access_token=token + "x"),
                 id="ath"),
    pytest.param(lambda key, url, token: key.proof("POST", url), id="no-ath"),
    pytest.param(lambda key, url, token: DPoPKey.generate().proof("POST", url,
                                                                  access_token=token),
                 id="another-key"),
    pytest.param(lambda key, url, token: forged_proof(
        key._key, proof_claims("POST", url, access_token=token, now=time.time() - 120)),
        id="stale-iat"),
    pytest.param(lambda key, url, token: forged_proof(
        key._key, proof_claims("POST", url, access_token=token, now=time.time() + 120)),
        id="future-iat"),
    pytest.param(lambda key, url, token: None, id="missing"),
])
def test_a_bad_proof_is_invalid_dpop_proof(serve: Callable[..., Served], bad: Any) -> None:
    url, broker = serve()
    key = DPoPKey.generate()
    token = bound(broker, key)
    response = post(url, f"DPoP {token}", bad(key, url, token))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_dpop_proof"
    assert challenge(response, "DPoP").startswith('DPoP error="invalid_dpop_proof"')
    assert f'resource_metadata="{_metadata(url)}"' in challenge(response, "Bearer")


def test_a_proof_is_accepted_once(serve: Callable[..., Served]) -> None:
    url, broker = serve()
    key = DPoPKey.generate()
    token = bound(broker, key)
    proof = key.proof("POST", url, access_token=token)
    assert post(url, f"DPoP {token}", proof).status_code == 200
    replayed = post(url, f"DPoP {token}", proof)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_dpop_proof"


def test_a_proof_spent_at_one_replica_is_refused_at_another(
        serve: Callable[..., Served], redis_url: str) -> None:
    """Two replicas of one server (one resource URI, so one `htu`) on one Redis: RFC 9449
    §11.1's shared `jti` store. Per process, replica B would accept the captured proof."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    url_a, broker = serve(redis_url=redis_url, revocation_key_prefix=prefix)
    url_b, _ = serve(broker=broker, resource=url_a, redis_url=redis_url,
                     revocation_key_prefix=prefix)
    key = DPoPKey.generate()
    token = bound(broker, key)
    proof = key.proof("POST", url_a, access_token=token)
    assert post(url_a, f"DPoP {token}", proof).status_code == 200
    replayed = post(url_b, f"DPoP {token}", proof)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_dpop_proof"
    fresh = key.proof("POST", url_a, access_token=token)
    assert post(url_b, f"DPoP {token}", fresh).status_code == 200, "B serves fresh proofs"


def test_an_unreachable_replay_store_is_503_for_dpop_and_bearer_is_unaffected(
        serve: Callable[..., Served]) -> None:
    """Redis for proofs only (the caller's own revocation view): a proof that cannot be
    recorded is refused, as a server condition (503, retry), not as the client's fault."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    url, broker = serve(redis_url=dead, revocations=StaticRevocations())
    key = DPoPKey.generate()
    token = bound(broker, key)
    proof = key.proof("POST", url, access_token=token)
    for _ in range(2):  # and again: an outage never turns into acceptance
        refused = post(url, f"DPoP {token}", proof)
        assert refused.status_code == 503
        assert refused.json()["error"] == "temporarily_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert "www-authenticate" not in refused.headers
        assert token not in refused.text and proof not in refused.text
    assert post(url, f"Bearer {broker.tokens.mint()}").status_code == 200


def test_protect_picks_the_replay_store() -> None:
    def replay(**options: Any) -> object:
        mcp = build_protected_server(broker="http://broker.test", resource="http://s.test/mcp",
                                     cerbos=ScriptedPDP(), **options)
        assert isinstance(mcp.auth, BrokerAuthProvider)
        return mcp.auth.dpop_replay

    assert isinstance(replay(redis_url=None), MemoryProofReplayCache)
    shared = replay(redis_url="redis://127.0.0.1:1/0", revocations=StaticRevocations())
    assert isinstance(shared, RedisProofReplayCache) and shared.key_prefix == "ab:dpop-jti:"
    own = MemoryProofReplayCache()
    assert replay(redis_url="redis://127.0.0.1:1/0", dpop_replay=own) is own


def test_dpop_required_refuses_unbound_tokens_and_says_so(serve: Callable[..., Served]) -> None:
    url, broker = serve(dpop_required=True)
    refused = post(url, f"Bearer {broker.tokens.mint()}")
    assert refused.status_code == 401
    assert "DPoP-bound" in challenge(refused, "Bearer")
    missing = httpx.post(url, json=INITIALIZE, headers=MCP_HEADERS, trust_env=False)
    assert missing.status_code == 401 and "error=" not in missing.headers["www-authenticate"]
    assert challenge(missing, "DPoP").startswith('DPoP algs="EdDSA ES256"')
    metadata = httpx.get(_metadata(url), trust_env=False).json()
    assert metadata["dpop_bound_access_tokens_required"] is True
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]
    key = DPoPKey.generate("ES256")
    token = bound(broker, key)
    assert post(url, f"DPoP {token}", key.proof("POST", url, access_token=token)
                ).status_code == 200


def test_by_default_the_metadata_accepts_but_does_not_require_dpop(
        serve: Callable[..., Served]) -> None:
    url, _ = serve()
    metadata = httpx.get(_metadata(url), trust_env=False).json()
    assert metadata["dpop_bound_access_tokens_required"] is False
    assert metadata["dpop_signing_alg_values_supported"] == ["EdDSA", "ES256"]


async def test_the_replay_cache_forgets_after_the_window_and_refuses_when_full() -> None:
    now = [1000.0]
    cache = MemoryProofReplayCache(max_entries=2, clock=lambda: now[0])
    assert await cache.first_use("a", 1060) and not await cache.first_use("a", 1060)
    assert await cache.first_use("b", 1061)
    assert not await cache.first_use("c", 1062), "full of live entries: refuse"
    now[0] = 1060.5
    assert await cache.first_use("c", 1120), "a's window closed: room again"
    assert not await cache.first_use("b", 1061)


def _metadata(url: str) -> str:
    base, path = url.rsplit("/", 1)
    return f"{base}/.well-known/oauth-protected-resource/{path}"


async def test_the_verifier_alone_refuses_bound_tokens_it_cannot_check() -> None:
    """Behind FastMCP's own bearer backend nothing checks proofs: refuse rather than accept a
    stolen bound token as a bearer token."""
    broker = FakeBroker(audience="http://127.0.0.1:1/mcp")
    verifier = BrokerTokenVerifier(broker=broker.issuer, resource="http://127.0.0.1:1/mcp",
                                   http_client=broker.http_client())
    bound_token = bound(broker, DPoPKey.generate())
    assert await verifier.verify_token(broker.tokens.mint()) is not None
    assert await verifier.verify_token(bound_token) is None
    assert await verifier.verify_bound_or_bearer(bound_token) is not None


def test_a_cors_preflight_is_answered_alike_with_or_without_dpop_required(
        serve: Callable[..., Served]) -> None:
    """A preflight carries no token: requiring DPoP must not turn it into a 401."""
    preflight = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}
    statuses = [httpx.options(serve(dpop_required=required)[0], headers=preflight,
                              trust_env=False, timeout=10).status_code
                for required in (False, True)]
    assert statuses[0] == statuses[1] != 401


# DPoP nonces (RFC 9449 §9): protect(..., dpop_nonce_secret=...)

SECRET = "n" * 32


def test_a_proof_without_a_nonce_is_asked_for_one_and_the_retry_with_it_succeeds(
        serve: Callable[..., Served]) -> None:
    url, broker = serve(dpop_nonce_secret=SECRET)
    key = DPoPKey.generate()
    token = bound(broker, key)
    asked = post(url, f"DPoP {token}", key.proof("POST", url, access_token=token))
    assert asked.status_code == 401 and asked.json()["error"] == "use_dpop_nonce"
    assert challenge(asked, "DPoP").startswith('DPoP error="use_dpop_nonce", error_description=')
    assert challenge(asked, "Bearer") == f'Bearer resource_metadata="{_metadata(url)}"'
    nonce = asked.headers["dpop-nonce"]
    served = post(url, f"DPoP {token}", key.proof("POST", url, access_token=token, nonce=nonce))
    assert served.status_code == 200, served.text
    assert served.headers["dpop-nonce"] == nonce, "every DPoP response: the current nonce"


@pytest.mark.parametrize("issuer", [
    pytest.param(lambda url: NonceIssuer(SECRET, url, clock=lambda: time.time() - 180),
                 id="stale"),
    pytest.param(lambda url: NonceIssuer("o" * 32, url), id="another-secret"),
    pytest.param(lambda url: NonceIssuer(SECRET, url + "x"), id="another-resource"),
])
def test_a_nonce_that_is_stale_or_not_this_servers_is_use_dpop_nonce(
        serve: Callable[..., Served], issuer: Callable[[str], NonceIssuer]) -> None:
    """Stale: issued three periods of 60 s ago, past the period either side of now."""
    url, broker = serve(dpop_nonce_secret=SECRET)
    key = DPoPKey.generate()
    token = bound(broker, key)
    nonce = issuer(url).current()
    refused = post(url, f"DPoP {token}", key.proof("POST", url, access_token=token, nonce=nonce))
    assert refused.status_code == 401 and refused.json()["error"] == "use_dpop_nonce"
    assert refused.headers["dpop-nonce"] not in ("", nonce)


@pytest.mark.parametrize("bad", [
    pytest.param(lambda key, url, token, nonce: key.proof("GET", url, access_token=token,
                                                          nonce=nonce), id="htm"),
    pytest.param(lambda key, url, token, nonce: DPoPKey.generate().proof(
        "POST", url, access_token=token), id="another-key-and-no-nonce"),
])
def test_a_proof_bad_otherwise_is_still_invalid_dpop_proof(
        serve: Callable[..., Served], bad: Any) -> None:
    url, broker = serve(dpop_nonce_secret=SECRET)
    key = DPoPKey.generate()
    token = bound(broker, key)
    nonce = NonceIssuer(SECRET, url).current()
    refused = post(url, f"DPoP {token}", bad(key, url, token, nonce))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_dpop_proof"
    assert refused.headers["dpop-nonce"] == nonce, "refused DPoP requests get one too"


def test_a_proof_refused_for_its_nonce_is_not_spent(serve: Callable[..., Served]) -> None:
    url, broker = serve(dpop_nonce_secret=SECRET)
    key = DPoPKey.generate()
    token = bound(broker, key)
    claims = proof_claims("POST", url, access_token=token)
    assert post(url, f"DPoP {token}", forged_proof(key._key, claims)).status_code == 401
    claims["nonce"] = NonceIssuer(SECRET, url).current()  # same jti, now with the nonce
    assert post(url, f"DPoP {token}", forged_proof(key._key, claims)).status_code == 200


def test_bearer_tokens_are_unaffected_by_nonces(serve: Callable[..., Served]) -> None:
    url, broker = serve(dpop_nonce_secret=SECRET)
    served = post(url, f"Bearer {broker.tokens.mint()}")
    assert served.status_code == 200 and "dpop-nonce" not in served.headers


def test_replicas_sharing_the_secret_accept_each_others_nonces(
        serve: Callable[..., Served]) -> None:
    url_a, broker = serve(dpop_nonce_secret=SECRET)
    url_b, _ = serve(broker=broker, resource=url_a, dpop_nonce_secret=SECRET)
    key = DPoPKey.generate()
    token = bound(broker, key)
    nonce = post(url_a, f"DPoP {token}", key.proof("POST", url_a, access_token=token)
                 ).headers["dpop-nonce"]
    served = post(url_b, f"DPoP {token}", key.proof("POST", url_a, access_token=token,
                                                    nonce=nonce))
    assert served.status_code == 200, served.text


def test_a_short_nonce_secret_fails_at_protect() -> None:
    mcp = build_server()
    with pytest.raises(ValueError, match="32 bytes"):
        protect(mcp, broker="http://broker.test", resource="http://s.test/mcp",
                cerbos=ScriptedPDP(), redis_url=None, dpop_nonce_secret="too short")
    assert mcp.auth is None, "nothing installed"
