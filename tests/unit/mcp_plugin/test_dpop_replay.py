"""RedisProofReplayCache on a real Redis: a proof is spent once across replicas, remembered for
its window only, and refused (never accepted) when Redis cannot answer."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from mcp_plugin import ProofReplayUnavailable, RedisProofReplayCache
from tests.support.services import free_port


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def caches(redis_url: str, prefix: str
                 ) -> AsyncIterator[Callable[..., RedisProofReplayCache]]:
    made: list[RedisProofReplayCache] = []

    def make(url: str = redis_url, **options: object) -> RedisProofReplayCache:
        made.append(RedisProofReplayCache(url, key_prefix=prefix, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for cache in made:
        await cache.aclose()


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def key() -> str:
    return f"jkt-{uuid.uuid4().hex}:jti-{uuid.uuid4().hex}"


async def test_a_proof_is_first_used_once(caches: Callable[..., RedisProofReplayCache]) -> None:
    cache, proof = caches(), key()
    assert await cache.first_use(proof, time.time() + 60)
    assert not await cache.first_use(proof, time.time() + 60)
    assert await cache.first_use(key(), time.time() + 60), "another proof is not a replay"


async def test_two_replicas_share_what_was_spent(
        caches: Callable[..., RedisProofReplayCache]) -> None:
    replica_a, replica_b, proof = caches(), caches(), key()
    assert await replica_a.first_use(proof, time.time() + 60)
    assert not await replica_b.first_use(proof, time.time() + 60)
    assert not await replica_a.first_use(proof, time.time() + 60)


async def test_a_proof_is_remembered_until_its_window_closes_and_no_longer(
        caches: Callable[..., RedisProofReplayCache], redis_url: str) -> None:
    cache, proof = caches(clock=lambda: 1000.0), key()
    assert await cache.first_use(proof, 1000.3)  # 300 ms left on the cache's own clock
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert 0 < await client.pttl(cache.key(proof)) <= 300
    finally:
        await client.aclose()
    assert not await cache.first_use(proof, 1000.3)
    await asyncio.sleep(0.4)
    assert await cache.first_use(proof, 1000.3), "the window closed: Redis forgot it"


async def test_keys_are_hashed_under_the_prefix(
        caches: Callable[..., RedisProofReplayCache], prefix: str) -> None:
    cache = caches()
    long_key = "k" * 4000 + ":" + "j" * 4000
    name = cache.key(long_key)
    assert name.startswith(f"{prefix}dpop-jti:") and len(name) == len(f"{prefix}dpop-jti:") + 64
    assert "k" * 10 not in name
    assert await cache.first_use(long_key, time.time() + 60)
    assert not await cache.first_use(long_key, time.time() + 60)


async def test_redis_down_refuses_the_proof(
        caches: Callable[..., RedisProofReplayCache]) -> None:
    cache = caches(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    for _ in range(2):  # the second one too: the outage does not turn into acceptance
        with pytest.raises(ProofReplayUnavailable):
            await cache.first_use(key(), time.time() + 60)


async def test_a_silent_redis_refuses_within_the_timeout(
        caches: Callable[..., RedisProofReplayCache], silent_redis: str) -> None:
    cache = caches(silent_redis, timeout_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(ProofReplayUnavailable):
        await cache.first_use(key(), time.time() + 60)
    assert time.monotonic() - started < 1.5


async def test_it_reopens_after_being_closed(
        caches: Callable[..., RedisProofReplayCache]) -> None:
    cache, proof = caches(), key()
    assert await cache.first_use(proof, time.time() + 60)
    await cache.aclose()
    await cache.aclose()  # idempotent
    assert not await cache.first_use(proof, time.time() + 60)


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        RedisProofReplayCache("redis://127.0.0.1:1/0", timeout_seconds=0)
