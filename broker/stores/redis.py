"""Redis connection, key names, and the small stores: replay cache and health check.

Sessions, revocations and the audit trail have their own modules beside this one. Every
command runs under the configured timeout; a slow or absent Redis raises
`DependencyUnavailable`, and callers fail closed (nothing minted, nothing allowed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from broker.errors import DependencyUnavailable
from broker.ports import Clock

T = TypeVar("T")


def text(value: object) -> str:
    """A Redis reply as text: the client returns bytes; its type hints allow more."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected Redis reply of type {type(value).__name__}")


def connect(url: str, timeout_ms: int) -> aioredis.Redis:
    seconds = timeout_ms / 1000
    # After a Redis restart every pooled connection is dead; retry a command once, at once,
    # on a fresh connection, so the first request after recovery is not a spurious 503.
    # The caller's own deadline (`RedisEdge._call`) still bounds the whole attempt.
    return aioredis.Redis.from_url(
        url, socket_timeout=seconds, socket_connect_timeout=seconds,
        health_check_interval=30, max_connections=256,
        retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
    )


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def session(self, sid: str) -> str:
        return f"{self.prefix}session:{sid}"

    def by_user(self, subject: str) -> str:
        return f"{self.prefix}sessions:user:{subject}"

    def by_agent(self, agent: str) -> str:
        return f"{self.prefix}sessions:agent:{agent}"

    def children(self, sid: str) -> str:
        return f"{self.prefix}sessions:children:{sid}"

    def all_sessions(self) -> str:
        return f"{self.prefix}sessions:all"

    def jti(self, jti: str) -> str:
        return f"{self.prefix}jti:{jti}"

    def replay(self, key: str) -> str:
        return f"{self.prefix}replay:{key}"

    @property
    def revoked(self) -> str:
        """The revocation hash, and the pub/sub channel of the same name."""
        return f"{self.prefix}revoked"

    @property
    def revoked_forget(self) -> str:
        return f"{self.prefix}revoked:forget"

    def revocation(self, rid: str) -> str:
        return f"{self.prefix}revocation:{rid}"

    @property
    def revocations(self) -> str:
        return f"{self.prefix}revocations"

    @property
    def audit(self) -> str:
        return f"{self.prefix}audit"

    def audit_by_user(self, subject: str) -> str:
        return f"{self.prefix}audit:user:{subject}"

    def audit_by_agent(self, agent: str) -> str:
        return f"{self.prefix}audit:agent:{agent}"


class RedisEdge:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, timeout_ms: int,
                 clock: Clock) -> None:
        self._redis, self._keys, self._clock = client, keys, clock
        self._timeout = timeout_ms / 1000

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except (RedisError, OSError, TimeoutError) as exc:
            raise DependencyUnavailable(f"redis: {type(exc).__name__}") from None


class RedisReplayCache(RedisEdge):
    async def first_use(self, key: str, expires_at: int) -> bool:
        stored = await self._call(
            self._redis.set(self._keys.replay(key), b"1", nx=True,
                            exat=max(expires_at, int(self._clock()) + 1))
        )
        return bool(stored)


class RedisHealth(RedisEdge):
    async def ping(self) -> None:
        await self._call(self._redis.ping())
