"""Redis-backed session store and replay cache.

One pipelined MULTI per exchange writes the session and its indexes (by user, by agent, by
parent), so a session is either fully recorded or not at all, in one round trip. Every
command runs under the configured timeout; a slow or absent Redis raises
`DependencyUnavailable` and the grant mints nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from broker.errors import DependencyUnavailable
from broker.ports import Clock
from broker.sessions import SessionRecord

T = TypeVar("T")


def connect(url: str, timeout_ms: int) -> aioredis.Redis:
    seconds = timeout_ms / 1000
    return aioredis.Redis.from_url(
        url, socket_timeout=seconds, socket_connect_timeout=seconds,
        health_check_interval=30, max_connections=256,
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

    def replay(self, key: str) -> str:
        return f"{self.prefix}replay:{key}"


class _RedisEdge:
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


class RedisSessionStore(_RedisEdge):
    async def open_session(self, record: SessionRecord) -> None:
        now = int(self._clock())
        ttl = max(record.expires_at - now, 1)
        keys = self._keys
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(keys.session(record.sid), record.to_json(), ex=ttl)
        for index in (keys.by_user(record.subject), keys.by_agent(record.agent)):
            pipe.zadd(index, {record.sid: record.expires_at})
            pipe.zremrangebyscore(index, "-inf", now)  # keep indexes bounded by live sessions
            pipe.expireat(index, record.lineage_expires_at, gt=True)
            pipe.expireat(index, record.lineage_expires_at, nx=True)
        if record.parent_sid is not None:
            pipe.sadd(keys.children(record.parent_sid), record.sid)
            pipe.expireat(keys.children(record.parent_sid), record.lineage_expires_at)
        await self._call(pipe.execute())

    async def get_session(self, sid: str) -> SessionRecord | None:
        raw = await self._call(self._redis.get(self._keys.session(sid)))
        return None if raw is None else SessionRecord.from_json(raw)


class RedisReplayCache(_RedisEdge):
    async def first_use(self, key: str, expires_at: int) -> bool:
        stored = await self._call(
            self._redis.set(self._keys.replay(key), b"1", nx=True,
                            exat=max(expires_at, int(self._clock()) + 1))
        )
        return bool(stored)


class RedisHealth(_RedisEdge):
    async def ping(self) -> None:
        await self._call(self._redis.ping())
