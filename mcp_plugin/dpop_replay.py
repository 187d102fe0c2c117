"""RedisProofReplayCache: DPoP proof `jti`s spent once across every replica of a server.

Replicas of one MCP server sit behind one URI, so a proof's `htu` is good at all of them:
a per-process cache would let a captured proof be replayed once at each replica within its
window. RFC 9449 §11.1 asks servers that accept proofs for the same URI to share the `jti`
state; this store is that shared state, in the broker's Redis (the broker keeps its own proofs
the same way, under its own keys).

Each check is one `SET <prefix>dpop-jti:<sha256> 1 NX PX <ms>`: set means first use. It fails
closed: when Redis errors or does not answer within `timeout_seconds`, it raises
`ProofReplayUnavailable` and `BrokerAuthentication` answers 503, never accepting a proof it
could not record. The client is created on first use, in the loop that serves requests, and
closed by `aclose()` (the protection's lifespan); it reopens if used again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mcp_plugin.dpop_auth import ProofReplayUnavailable

logger = logging.getLogger("mcp_plugin.dpop")

DEFAULT_TIMEOUT_SECONDS = 0.5
"""The request waits on it: as the broker's `redis_timeout_ms` default, far above a healthy
round trip (well under a millisecond on a LAN), short enough that an outage is a quick 503."""


class RedisProofReplayCache:
    """A `ProofReplayCache` in Redis; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = "ab:",
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self.key_prefix = f"{key_prefix}dpop-jti:"
        self.timeout_seconds = timeout_seconds
        self._url = redis_url  # may hold a password: never logged
        self._clock = clock  # the clock the proof window was checked with
        self._client: Redis | None = None
        self._outage = False  # a failure was logged: log the rest of the outage quietly

    def key(self, key: str) -> str:
        # Hashed: the jti is the client's choice (up to the 4 KiB proof), so this bounds the
        # key's length and keeps client-chosen bytes out of Redis key names.
        return self.key_prefix + hashlib.sha256(key.encode()).hexdigest()

    async def first_use(self, key: str, expires_at: float) -> bool:
        # PX, not PXAT: a TTL from our own clock, which checked the window, so a skew between
        # this host and Redis cannot shorten how long the proof is remembered.
        ttl_ms = max(1, math.ceil((expires_at - self._clock()) * 1000))
        try:
            async with asyncio.timeout(self.timeout_seconds):
                stored = await self._redis().set(self.key(key), b"1", nx=True, px=ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise ProofReplayUnavailable(f"redis: {type(exc).__name__}") from None
        if self._outage:
            self._outage = False
            logger.info("DPoP replay store reachable again",
                        extra={"event": "dpop_replay_recovered"})
        return bool(stored)

    async def aclose(self) -> None:
        """Close the connections (idempotent); a later `first_use` opens new ones."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(
                self._url,
                socket_connect_timeout=self.timeout_seconds,
                socket_timeout=self.timeout_seconds,
                # no retry: a SET NX that may have landed must not be sent again and then be
                # taken for a replay; the client retries with a fresh proof after the 503
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                client_name="mcp_plugin.dpop_replay",  # for CLIENT LIST
            )
        return self._client

    def _failed(self, exc: BaseException) -> None:
        level = logging.DEBUG if self._outage else logging.WARNING
        self._outage = True
        logger.log(level, "DPoP replay store unavailable (%s); refusing DPoP requests with 503",
                   type(exc).__name__,
                   extra={"event": "dpop_replay_unavailable", "error": type(exc).__name__})
