"""Broker key discovery and caching: parsed once, refetched rarely, trouble logged."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from mcp_plugin import BrokerKeys, BrokerTokenVerifier
from mcp_plugin.jwks import metadata_url, parse_jwks
from mcp_plugin.testing import FakeBroker, TestKeyPair
from tests.unit.mcp_plugin.conftest import ISSUER, NOW, RESOURCE, Monotonic


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        pytest.param("http://127.0.0.1:8400", "http://127.0.0.1:8400/.well-known/"
                     "oauth-authorization-server", id="root"),
        pytest.param("https://idp.example/tenant1", "https://idp.example/.well-known/"
                     "oauth-authorization-server/tenant1", id="with-path"),
    ],
)
def test_metadata_url_follows_rfc8414(issuer: str, expected: str) -> None:
    assert metadata_url(issuer) == expected


def test_only_signing_keys_of_allowed_algorithms_are_kept() -> None:
    ed, ec = TestKeyPair.generate(kid="ed"), TestKeyPair.generate("ES256", kid="ec")
    document = {
        "keys": [
            ed.public_jwk(),
            ec.public_jwk(),
            {**TestKeyPair.generate(kid="enc").public_jwk(), "use": "enc"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},  # no kid
            "junk",
        ]
    }
    assert set(parse_jwks(document)) == {"ed", "ec"}


def _verifier(broker: FakeBroker, monotonic: Monotonic, **kw: object) -> BrokerTokenVerifier:
    keys = BrokerKeys(ISSUER, http_client=broker.http_client(), monotonic=monotonic, **kw)  # type: ignore[arg-type]
    return BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, keys=keys, clock=lambda: NOW)


async def test_keys_are_fetched_once_and_reused(broker: FakeBroker, monotonic: Monotonic) -> None:
    verifier = _verifier(broker, monotonic)
    for _ in range(5):
        assert await verifier.verify_token(broker.tokens.mint()) is not None
    assert (broker.metadata_requests, broker.jwks_requests) == (1, 1)


async def test_unknown_kid_refetches_at_most_once_per_interval(
    broker: FakeBroker, monotonic: Monotonic
) -> None:
    verifier = _verifier(broker, monotonic, refetch_interval=5.0)
    assert await verifier.verify_token(broker.tokens.mint()) is not None
    stranger = TestKeyPair.generate(kid="stranger")
    for _ in range(20):
        assert await verifier.verify_token(broker.tokens.mint(key=stranger)) is None
    assert broker.jwks_requests == 1  # the first fetch was just now: no refetch yet
    monotonic.now += 5.0
    for _ in range(20):
        assert await verifier.verify_token(broker.tokens.mint(key=stranger)) is None
    assert broker.jwks_requests == 2


async def test_rotated_in_key_is_picked_up(broker: FakeBroker, monotonic: Monotonic) -> None:
    verifier = _verifier(broker, monotonic)
    assert await verifier.verify_token(broker.tokens.mint()) is not None
    new_key = TestKeyPair.generate(kid="next")
    broker.tokens.keys.insert(0, new_key)
    monotonic.now += 10
    assert await verifier.verify_token(broker.tokens.mint()) is not None


async def test_stale_key_set_is_refreshed(broker: FakeBroker, monotonic: Monotonic) -> None:
    verifier = _verifier(broker, monotonic, max_age=60.0)
    await verifier.verify_token(broker.tokens.mint())
    monotonic.now += 61
    await verifier.verify_token(broker.tokens.mint())
    assert broker.jwks_requests == 2


async def test_jwks_outage_keeps_cached_keys_and_warns(
    broker: FakeBroker, monotonic: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    up = True

    def handle(request: httpx.Request) -> httpx.Response:
        if not up:
            return httpx.Response(503)
        status, body = broker.respond(str(request.url))
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    keys = BrokerKeys(ISSUER, http_client=client, monotonic=monotonic, max_age=60.0)
    verifier = BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, keys=keys, clock=lambda: NOW)
    assert await verifier.verify_token(broker.tokens.mint()) is not None
    up = False
    monotonic.now += 61
    with caplog.at_level(logging.WARNING, logger="mcp_plugin.jwks"):
        assert await verifier.verify_token(broker.tokens.mint()) is not None
    assert any("refresh failed" in r.getMessage() for r in caplog.records)


async def test_metadata_of_another_issuer_is_refused(
    monotonic: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    impostor = FakeBroker("http://impostor.test", audience=RESOURCE)
    keys = BrokerKeys(ISSUER, http_client=impostor.http_client(), monotonic=monotonic)
    verifier = BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, keys=keys, clock=lambda: NOW)
    token = impostor.tokens.mint(claims={"iss": ISSUER})
    with caplog.at_level(logging.WARNING, logger="mcp_plugin.jwks"):
        assert await verifier.verify_token(token) is None
    assert any("another issuer" in r.getMessage() for r in caplog.records)
    assert impostor.jwks_requests == 0


async def test_requests_arriving_during_a_fetch_wait_for_it(
    broker: FakeBroker, monotonic: Monotonic
) -> None:
    """A cold start, or a rotation: tokens with a kid not yet fetched arrive together. The
    first starts the fetch; the others must wait for it, not be refused by the interval."""
    release = asyncio.Event()
    answer = broker.transport()

    class HeldBroker(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await release.wait()
            return answer.handle_request(request)

    keys = BrokerKeys(ISSUER, http_client=httpx.AsyncClient(transport=HeldBroker()),
                      monotonic=monotonic)
    verifier = BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, keys=keys,
                                   clock=lambda: NOW)
    pending = [asyncio.create_task(verifier.verify_token(broker.tokens.mint()))
               for _ in range(5)]
    for _ in range(20):  # every request reaches the key lookup while the fetch is held
        await asyncio.sleep(0)
    release.set()
    assert all(accepted is not None for accepted in await asyncio.gather(*pending))
    assert broker.jwks_requests == 1
