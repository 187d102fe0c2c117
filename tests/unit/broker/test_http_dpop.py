"""The token endpoint's DPoP edge: a valid proof is spent once, and when Redis cannot say
whether it was, the request fails closed (503, nothing minted) instead of risking a replay."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from broker.dpop_nonce import NonceIssuer
from broker.errors import (
    DependencyUnavailable,
    InvalidDPoPProof,
    TemporarilyUnavailable,
    UseDPoPNonce,
)
from broker.http.dpop import proven_key
from broker.stores.memory import MemoryReplayCache
from tests.support.dpop import DPoPKey
from tests.support.jose import NOW

ENDPOINT = "https://broker.example.com/oauth2/token"


class RedisDown:
    async def first_use(self, key: str, expires_at: int) -> bool:
        raise DependencyUnavailable("redis: TimeoutError")


def replay() -> MemoryReplayCache:
    return MemoryReplayCache(clock=lambda: NOW)


def services(replay: MemoryReplayCache | RedisDown, nonces: NonceIssuer | None = None
             ) -> SimpleNamespace:
    return SimpleNamespace(token_endpoint=ENDPOINT, clock=lambda: NOW, replay=replay,
                           settings=SimpleNamespace(dpop_proof_window_seconds=60),
                           nonces=nonces)


def request(*proofs: str) -> Request:
    headers = [(b"dpop", p.encode()) for p in proofs]
    # what uvicorn saw behind the proxy: another host and scheme than the issuer's
    return Request({"type": "http", "method": "POST", "path": "/oauth2/token",
                    "headers": [(b"host", b"10.0.0.7:8400"), *headers], "scheme": "http"})


def key() -> DPoPKey:
    made = DPoPKey.generate()
    made._clock = lambda: NOW
    return made


async def test_a_proof_for_the_published_uri_is_spent_once() -> None:
    seen, signer = replay(), key()
    proof = signer.proof("POST", ENDPOINT)
    assert await proven_key(request(proof), services(seen)) == signer.thumbprint
    with pytest.raises(InvalidDPoPProof, match="used before"):
        await proven_key(request(proof), services(seen))


async def test_no_proof_is_none_and_two_are_refused() -> None:
    assert await proven_key(request(), services(replay())) is None
    signer = key()
    with pytest.raises(InvalidDPoPProof, match="exactly one"):
        await proven_key(request(signer.proof("POST", ENDPOINT), signer.proof("POST", ENDPOINT)),
                         services(replay()))


async def test_redis_down_is_503_not_a_token() -> None:
    with pytest.raises(TemporarilyUnavailable):
        await proven_key(request(key().proof("POST", ENDPOINT)), services(RedisDown()))


def nonces() -> NonceIssuer:
    return NonceIssuer("n" * 32, ENDPOINT, clock=lambda: NOW)


async def test_with_nonces_a_proof_needs_a_current_one_of_any_replica() -> None:
    seen, signer, here = replay(), key(), nonces()
    bare = request(signer.proof("POST", ENDPOINT))
    with pytest.raises(UseDPoPNonce):
        await proven_key(bare, services(seen, here))
    assert bare.state.dpop_nonce == here.current()  # the answer carries it
    replica = nonces()  # another process, same secret and URI
    proven = request(signer.proof("POST", ENDPOINT, nonce=here.current()))
    assert await proven_key(proven, services(seen, replica)) == signer.thumbprint
    assert proven.state.dpop_nonce == replica.current()


async def test_a_proof_refused_for_its_nonce_is_not_spent() -> None:
    seen, signer = replay(), key()
    proof = signer.proof("POST", ENDPOINT, nonce="not-ours")
    for _ in range(2):  # refused for the nonce both times, never "used before"
        with pytest.raises(UseDPoPNonce):
            await proven_key(request(proof), services(seen, nonces()))


async def test_without_nonces_nothing_is_asked_or_answered() -> None:
    plain = request(key().proof("POST", ENDPOINT))
    assert await proven_key(plain, services(replay())) is not None
    assert not hasattr(plain.state, "dpop_nonce")
