"""JwksCache: key selection by alg and kid, parsing, refresh rate limit, stale-while-error.

The key and token helpers at the top are shared with test_upstream and test_client_assertion.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import jwt
import pytest

from broker.jwks import (
    JwksCache,
    JwksUnavailable,
    KeyNotFound,
    fetch_json,
)
from broker.jws import TokenRejected, check_time_claims, read_unverified
from tests.support.jose import (
    ED_KEY,
    ES256_KEY,
    ES384_KEY,
    ES512_KEY,
    NOW,
    RSA_KEY,
    RSA_KEY_2,
    Clock,
    CountingFetch,
    SigningKey,
    b64url,
    cache_of,
    jwks_of,
    rsa_private,
)

# --- key selection ------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "alg"), [
    (RSA_KEY, "RS256"), (RSA_KEY, "RS512"), (RSA_KEY, "PS256"), (RSA_KEY, "PS384"),
    (ES256_KEY, "ES256"), (ES384_KEY, "ES384"), (ES512_KEY, "ES512"), (ED_KEY, "EdDSA"),
], ids=["RS256", "RS512", "PS256", "PS384", "ES256", "ES384", "ES512", "EdDSA"])
async def test_key_for_returns_a_key_that_verifies(key: SigningKey, alg: str) -> None:
    cache, _ = cache_of(RSA_KEY, ES256_KEY, ES384_KEY, ES512_KEY, ED_KEY)
    token = key.sign({"sub": "u"}, alg=alg)
    public, chosen = await cache.key_for(jwt.get_unverified_header(token))
    assert chosen == alg
    assert jwt.decode(token, public, algorithms=[chosen]) == {"sub": "u"}


@pytest.mark.parametrize("header", [
    {"alg": "none", "kid": "rsa-1"}, {"alg": "None", "kid": "rsa-1"},
    {"alg": "NONE", "kid": "rsa-1"}, {"kid": "rsa-1"}, {"alg": 256, "kid": "rsa-1"},
    {"alg": "HS256", "kid": "rsa-1"}, {"alg": "ES256K", "kid": "ec-256"},
    {"alg": "ES256", "kid": "rsa-1"}, {"alg": "RS256", "kid": "ec-256"},
    {"alg": "ES256", "kid": "ec-384"}, {"alg": "EdDSA", "kid": "rsa-1"},
    {"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}, {"alg": "RS256", "kid": 1},
], ids=["none", "None", "NONE", "no-alg", "alg-not-a-string", "HS256", "ES256K",
        "ES256-with-RSA-key", "RS256-with-EC-key", "ES256-with-P-384-key", "EdDSA-with-RSA-key",
        "crit", "kid-not-a-string"])
async def test_key_for_rejects(header: dict[str, Any]) -> None:
    cache, _ = cache_of(RSA_KEY, ES256_KEY, ES384_KEY)
    with pytest.raises(KeyNotFound):
        await cache.key_for(header)


async def test_per_issuer_algorithm_allowlist_narrows_the_key_types() -> None:
    cache, _ = cache_of(RSA_KEY, algorithms=["PS256"])
    assert (await cache.key_for({"alg": "PS256", "kid": "rsa-1"}))[1] == "PS256"
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "rsa-1"})


def test_an_allowlist_with_hs256_or_none_is_a_configuration_error() -> None:
    for algorithms in (["HS256"], ["none"], []):
        with pytest.raises(ValueError, match="subset"):
            JwksCache(CountingFetch({"keys": []}), algorithms=algorithms)


@pytest.mark.parametrize("extra", [
    {"jku": "https://attacker.example/jwks"}, {"x5u": "https://attacker.example/cert"},
    {"jwk": SigningKey(rsa_private("attacker"), "RS256", "rsa-1").jwk()},
    {"x5c": ["MIIB..."]},
], ids=["jku", "x5u", "jwk", "x5c"])
async def test_key_locating_headers_are_ignored(extra: dict[str, Any]) -> None:
    clock = Clock()
    cache, fetch = cache_of(RSA_KEY, clock=clock)
    public, _ = await cache.key_for({"alg": "RS256", "kid": "rsa-1", **extra})
    assert public.public_numbers() == RSA_KEY.private.public_key().public_numbers()
    clock.now += 10
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "attacker", **extra})
    assert fetch.calls == 2  # the first fetch and one refetch for the unknown kid, nothing else


@pytest.mark.parametrize(("keys", "alg", "found"), [
    ((RSA_KEY,), "RS256", True), ((RSA_KEY, RSA_KEY_2), "RS256", False),
    ((RSA_KEY, ES256_KEY), "ES256", True), ((RSA_KEY, ES256_KEY), "RS256", True),
    ((ES256_KEY,), "RS256", False),
], ids=["one-rsa", "two-rsa", "rsa-and-ec-asks-ec", "rsa-and-ec-asks-rsa", "no-fitting-key"])
async def test_kidless_header_needs_exactly_one_fitting_key(
    keys: tuple[SigningKey, ...], alg: str, found: bool
) -> None:
    cache, _ = cache_of(*keys)
    if found:
        assert (await cache.key_for({"alg": alg}))[1] == alg
    else:
        with pytest.raises(KeyNotFound):
            await cache.key_for({"alg": alg})


# --- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("jwk", [
    RSA_KEY_2.jwk(use="enc"), RSA_KEY_2.jwk(key_ops=["encrypt"]), RSA_KEY_2.jwk(alg="ES256"),
    RSA_KEY_2.jwk(alg="HS256"), {**RSA_KEY_2.jwk(), "n": "!!not-base64!!"},
    {"kty": "RSA", "kid": "rsa-2"}, {"kty": "oct", "kid": "rsa-2", "k": "c2VjcmV0"},
    SigningKey(rsa_private("small", 1024), "RS256", "rsa-2").jwk(),
    {**RSA_KEY_2.jwk(), "d": "AQAB"}, "not-an-object",
], ids=["use-enc", "key-ops-encrypt", "alg-conflicts", "alg-HS256", "broken-modulus",
        "missing-members", "symmetric", "rsa-1024", "private-material", "not-an-object"])
async def test_unusable_keys_are_skipped_and_logged_without_key_material(
    jwk: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fetch = CountingFetch({"keys": [RSA_KEY.jwk(), jwk]})
    cache = JwksCache(fetch, clock=Clock(), min_refresh_interval_seconds=0)
    caplog.set_level(logging.DEBUG, "broker.jwks")
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "rsa-2"})
    assert (await cache.key_for({"alg": "RS256", "kid": "rsa-1"}))[1] == "RS256"
    material = jwk.get("n", "@@") if isinstance(jwk, dict) else "@@"
    assert material not in caplog.text


async def test_rsa_key_with_alg_ps256_verifies_ps256_only() -> None:
    cache = JwksCache(CountingFetch({"keys": [RSA_KEY.jwk(alg="PS256")]}), clock=Clock())
    assert (await cache.key_for({"alg": "PS256", "kid": "rsa-1"}))[1] == "PS256"
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "rsa-1"})


# --- refresh ------------------------------------------------------------------------------

async def test_unknown_kid_refetches_once_per_interval() -> None:
    clock = Clock()
    cache, fetch = cache_of(RSA_KEY, clock=clock)
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 1
    with pytest.raises(KeyNotFound):  # no refetch: the set is younger than the interval
        await cache.key_for({"alg": "RS256", "kid": "garbage-0"})
    assert fetch.calls == 1
    clock.now += 10
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "garbage-1"})
    assert fetch.calls == 2
    clock.now += 9
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "garbage-2"})
    assert fetch.calls == 2
    clock.now += 1
    fetch.jwks = jwks_of(RSA_KEY, RSA_KEY_2)
    assert (await cache.key_for({"alg": "RS256", "kid": "rsa-2"}))[1] == "RS256"
    assert fetch.calls == 3


async def test_set_older_than_max_age_is_refetched_on_next_use() -> None:
    clock = Clock()
    cache, fetch = cache_of(RSA_KEY, clock=clock)
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    clock.now += 299
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 1
    clock.now += 1
    fetch.jwks = jwks_of(RSA_KEY_2)  # the IdP withdrew rsa-1
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 2


async def test_stale_while_error_until_max_staleness() -> None:
    clock = Clock()
    cache, fetch = cache_of(RSA_KEY, clock=clock)
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    fetch.failure = JwksUnavailable("down")
    clock.now += 3000
    assert (await cache.key_for({"alg": "RS256", "kid": "rsa-1"}))[1] == "RS256"
    assert fetch.calls == 2
    clock.now += 5
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 2  # failures are rate limited too
    clock.now += 601
    with pytest.raises(JwksUnavailable):
        await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    fetch.failure = None
    clock.now += 10
    assert (await cache.key_for({"alg": "RS256", "kid": "rsa-1"}))[1] == "RS256"


@pytest.mark.parametrize("failure", [
    JwksUnavailable("down"), httpx.ConnectError("refused"), ValueError("not JSON"), OSError(),
], ids=["unavailable", "http-error", "value-error", "os-error"])
async def test_first_fetch_failure_is_unavailable_and_retried_after_the_interval(
    failure: Exception,
) -> None:
    clock = Clock()
    cache, fetch = cache_of(RSA_KEY, clock=clock)
    fetch.failure = failure
    for _ in range(2):
        with pytest.raises(JwksUnavailable):
            await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 1
    fetch.failure = None
    clock.now += 10
    await cache.key_for({"alg": "RS256", "kid": "rsa-1"})
    assert fetch.calls == 2


async def test_a_hanging_fetch_times_out() -> None:
    cache, fetch = cache_of(RSA_KEY, fetch_timeout_seconds=0)
    fetch.gate = asyncio.Event()
    with pytest.raises(JwksUnavailable):
        await cache.key_for({"alg": "RS256", "kid": "rsa-1"})


async def test_concurrent_callers_share_one_fetch() -> None:
    cache, fetch = cache_of(RSA_KEY)
    fetch.gate = asyncio.Event()
    callers = [asyncio.create_task(cache.key_for({"alg": "RS256", "kid": kid}))
               for kid in ["rsa-1"] * 10 + ["unknown"] * 10]
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert fetch.calls == 1
    assert sum(isinstance(r, KeyNotFound) for r in results) == 10


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    cache, fetch = cache_of(RSA_KEY)
    fetch.gate = asyncio.Event()
    first = asyncio.create_task(cache.key_for({"alg": "RS256", "kid": "rsa-1"}))
    second = asyncio.create_task(cache.key_for({"alg": "RS256", "kid": "rsa-1"}))
    await asyncio.sleep(0)
    first.cancel()
    fetch.gate.set()
    assert (await second)[1] == "RS256"
    assert fetch.calls == 1


async def test_static_set_never_fetches() -> None:
    cache = JwksCache.from_static(jwks_of(ED_KEY))
    assert (await cache.key_for({"alg": "EdDSA", "kid": "ed-1"}))[1] == "EdDSA"
    with pytest.raises(KeyNotFound):
        await cache.key_for({"alg": "EdDSA", "kid": "other"})


async def test_from_url_fetches_over_http() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=jwks_of(ES256_KEY))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        cache = JwksCache.from_url(http, "https://idp.example/jwks", clock=Clock())
        assert (await cache.key_for({"alg": "ES256", "kid": "ec-256"}))[1] == "ES256"
    assert seen == ["https://idp.example/jwks"]


@pytest.mark.parametrize(("response", "status"), [
    (httpx.Response(500, text="oops"), 500), (httpx.Response(404), 404),
    (httpx.Response(200, text="<html>"), None), (httpx.Response(200, json=[1]), None),
    (httpx.Response(200, content=b" " * (600 * 1024)), None),
], ids=["500", "404", "not-json", "not-an-object", "too-large"])
async def test_fetch_json_failures(response: httpx.Response, status: int | None) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response)) as http:
        with pytest.raises(JwksUnavailable) as caught:
            await fetch_json(http, "https://idp.example/jwks")
    assert caught.value.status_code == status


# --- shared token checks ------------------------------------------------------------------

@pytest.mark.parametrize("token", [
    "a" * 20_000, "é.b.c", "a.b.c.d.e", "a.b", "!!.b.c", b64url(b"[1]") + ".e30.",
], ids=["oversized", "non-ascii", "jwe-shaped", "two-parts", "bad-base64", "header-not-object"])
def test_read_unverified_rejects(token: str) -> None:
    with pytest.raises(TokenRejected):
        read_unverified(token, max_length=16 * 1024)


@pytest.mark.parametrize(("claims", "accepted"), [
    ({"exp": NOW + 60}, True), ({"exp": NOW - 29}, True), ({"exp": NOW - 30}, False),
    ({}, False), ({"exp": "soon"}, False), ({"exp": True}, False),
    ({"exp": float("inf")}, False), ({"exp": float("nan")}, False),
    ({"exp": NOW + 60, "nbf": NOW + 29}, True), ({"exp": NOW + 60, "nbf": NOW + 31}, False),
    ({"exp": NOW + 60, "iat": NOW + 31}, False), ({"exp": NOW + 60, "iat": -1}, False),
], ids=["valid", "expired-within-leeway", "expired-beyond-leeway", "exp-missing",
        "exp-string", "exp-bool", "exp-inf", "exp-nan", "nbf-within-leeway", "nbf-future",
        "iat-future", "iat-negative"])
def test_check_time_claims(claims: dict[str, Any], accepted: bool) -> None:
    if accepted:
        assert check_time_claims(claims, now=NOW, leeway=30) == int(claims["exp"])
    else:
        with pytest.raises(TokenRejected):
            check_time_claims(claims, now=NOW, leeway=30)
