"""RedisRevocationFeed: the broker's revocations mirrored in memory (the reader side of
docs/revocation-protocol.md, version 1).

A background task subscribes to `<p>revoked`, reads the hash `<p>revoked` in full (HSCAN),
then PINGs over the subscription and applies every message that arrives before the pong:
from then on its copy is current. It follows the channel, pinging every ping interval. Any
error, disconnect, or silence past the staleness bound drops the connection and starts over
from the subscription, because what was published meanwhile is only in the hash now.
`is_revoked` reads memory only and fails closed (`RevocationUnavailable`) before the first
sync and whenever nothing was heard from Redis within `staleness_seconds`.

Memory: a dict field -> (cutoff, forget_at), so a check costs a few lookups whatever the
number of entries, plus an expiry index of coarse time buckets swept by the background task.
Entries merge (max of each), never shrink: revocations only widen. Revocation ids are not
kept. `broker` may not be imported here, so the field names are spelled out again below.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mcp_plugin.revocation import RevocationUnavailable, TokenFacts

logger = logging.getLogger("mcp_plugin.revocation")

PROTOCOL_VERSION = 1
SCAN_COUNT = 1000
"""Entries per HSCAN page (a hint). Larger pages cost Redis more than in proportion (1M
entries: ~1.3 ms a page of 1,000, ~33 ms a page of 10,000, which stalls every other client)
and, with the next page asked for while this one is parsed, are not faster for us either."""
BUCKET_SECONDS = 60
FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 1.0


class ProtocolError(ValueError):
    """A message or entry that does not follow the revocation protocol."""


class _Silent(Exception):
    """Nothing heard from Redis within the staleness bound: the connection is not trusted."""


RECANCEL_SECONDS = 0.05


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it runs on.

    One cancel is not enough on Python 3.11: redis-py sends each command through
    `asyncio.wait_for`, which there returns the write's result and drops a cancel that lands
    as the write completes (fixed in 3.12), so the task carries on following Redis.
    If our own caller is cancelled meanwhile, the task has been cancelled at least once and
    the caller's cancellation propagates."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_SECONDS)
    with contextlib.suppress(asyncio.CancelledError):
        await task  # done: raises whatever else ended it


def token_fields(token: TokenFacts) -> list[str]:
    """Every entry field that could cover `token`: user, jti, sid, and per agent of the chain
    its `agent:` and `pair:` fields (`pair:<agent> <sub>`, a space between)."""
    sub = token.subject
    fields = [f"user:{sub}", f"jti:{token.jti}", f"sid:{token.session}"]
    for agent in dict.fromkeys((token.client_id, *token.actors)):
        fields += (f"agent:{agent}", f"pair:{agent} {sub}")
    return fields


def _number(value: object) -> int:
    if type(value) is int:  # what JSON integers are, and what the broker writes (not bool)
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    raise ProtocolError("cutoff and forget_at must be finite numbers")


class RedisRevocationFeed:
    """A `ManagedRevocationView` kept current from Redis; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = "ab:",
        staleness_seconds: float = 5.0,
        ping_interval_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if staleness_seconds <= 0:
            raise ValueError("staleness_seconds must be positive")
        ping = staleness_seconds / 4 if ping_interval_seconds is None else ping_interval_seconds
        if not 0 < ping < staleness_seconds:
            raise ValueError("ping_interval_seconds must be positive and below the staleness")
        self.key = f"{key_prefix}revoked"
        self.staleness_seconds = staleness_seconds
        self.ping_interval_seconds = ping
        self._url = redis_url  # may hold a password: never logged
        self._clock = clock  # wall clock, for forget_at; liveness uses time.monotonic
        self._entries: dict[str, tuple[int, int]] = {}
        self._buckets: dict[int, list[str]] = {}
        self._due: list[int] = []  # heap of the buckets in _buckets
        self._client: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._synced = False  # a sync completed since start(); freshness also needs _last_heard
        self._following = False  # this connection's copy is complete: messages prove liveness
        self._last_heard = 0.0
        self._pings: deque[float] = deque()
        self._backoff = FIRST_BACKOFF_SECONDS
        self._outage = False  # a failure was logged since the last sync: log the rest quietly
        self._stale_logged = False

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    @property
    def is_fresh(self) -> bool:
        return self._synced and time.monotonic() - self._last_heard <= self.staleness_seconds

    def is_revoked(self, token: TokenFacts) -> bool:
        if not self.is_fresh:
            raise RevocationUnavailable(
                "revocation feed is stale" if self._synced else "revocation feed not synced"
            )
        now, iat, entries = self._clock(), token.issued_at, self._entries
        for field in token_fields(token):
            entry = entries.get(field)
            if entry is not None and entry[0] >= iat and entry[1] >= now:
                return True
        return False

    async def start(self) -> None:
        """Start following Redis (idempotent); wait up to the staleness bound for a first sync,
        so a server that just started can serve, but never hang while Redis is down."""
        if self._task is None or self._task.done():
            if self._client is None:
                self._client = Redis.from_url(
                    self._url,
                    retry=Retry(NoBackoff(), 0),  # never reconnect behind our back: we resync
                    socket_connect_timeout=min(1.0, self.staleness_seconds),
                    socket_timeout=self.staleness_seconds,
                    health_check_interval=0,
                    client_name="mcp_plugin.revocation_feed",  # for CLIENT LIST
                )
            self._started_at = time.monotonic()
            self._task = asyncio.create_task(self._run(), name="mcp_plugin.revocation_feed")
        remaining = self._started_at + self.staleness_seconds - time.monotonic()
        if remaining > 0:
            await self.wait_fresh(remaining)

    async def wait_fresh(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bool, not a raise
        """Wait until the feed vouches for its copy; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not self.is_fresh:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def aclose(self) -> None:
        """Stop following and close the connections (idempotent); the view then fails closed."""
        task, self._task = self._task, None
        if task is not None:
            await _stop(task)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        self._synced = self._following = self._outage = False
        self._entries, self._buckets, self._due = {}, {}, []

    async def _run(self) -> None:
        while True:
            assert self._client is not None
            try:
                await self._follow(self._client)
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect and resync in full
                self._lost(exc)
            self._following = False
            if self._synced and not self._stale_logged and not self.is_fresh:
                self._stale_logged = True
                logger.error("revocation feed stale: nothing heard from Redis for over %.1f s; "
                             "refusing every token until resynced", self.staleness_seconds,
                             extra={"event": "revocation_feed_stale"})
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)

    def _lost(self, exc: Exception) -> None:
        level = logging.DEBUG if self._outage else logging.WARNING
        self._outage = True
        what = "lost Redis" if self._synced else "cannot sync from Redis"
        logger.log(level, "revocation feed %s (%s: %s); reconnecting to resync",
                   what, type(exc).__name__, str(exc)[:200],
                   extra={"event": "revocation_feed_lost", "error": type(exc).__name__})

    async def _follow(self, client: Redis) -> None:
        """One connection's life: subscribe, read the hash, barrier ping, then follow."""
        self._following = False
        self._pings.clear()
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.key)
            await self._read_until(pubsub, "subscribe")
            await self._load(client)
            self._following = True  # the hash is in: messages now complete the copy
            await self._ping(pubsub)
            await self._read_until(pubsub, "pong")
            self._synced, self._outage, self._stale_logged = True, False, False
            self._backoff = FIRST_BACKOFF_SECONDS
            logger.info("revocation feed synced from Redis: %d entries", len(self._entries),
                        extra={"event": "revocation_feed_synced", "entries": len(self._entries)})
            await self._listen(pubsub)
        finally:
            await pubsub.aclose()

    async def _ping(self, pubsub: PubSub) -> None:
        self._pings.append(time.monotonic())
        await pubsub.ping()

    async def _read_until(self, pubsub: PubSub, kind: str) -> None:
        deadline = time.monotonic() + self.staleness_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            message = await pubsub.get_message(timeout=remaining)
            if message is not None and self._on_message(message) == kind:
                return
        raise _Silent(f"no {kind} from Redis within {self.staleness_seconds} s")

    async def _listen(self, pubsub: PubSub) -> None:
        next_ping = time.monotonic() + self.ping_interval_seconds
        while True:
            now = time.monotonic()
            if now >= next_ping:
                await self._ping(pubsub)
                next_ping = now + self.ping_interval_seconds
            if now - self._last_heard > self.staleness_seconds:
                raise _Silent("no pong from Redis within the staleness bound")
            message = await pubsub.get_message(timeout=max(0.001, next_ping - now))
            if message is not None:
                self._on_message(message)
            self._sweep()

    async def _load(self, client: Redis) -> None:
        """Read the hash in full. Each next page is asked for before this one is parsed, so
        Redis reads and sends it while we parse (two round trips in flight at most)."""
        skipped = 0
        page = asyncio.ensure_future(client.hscan(self.key, 0, count=SCAN_COUNT))
        try:
            while True:
                cursor, batch = await page
                if cursor != 0:
                    page = asyncio.ensure_future(client.hscan(self.key, cursor,
                                                              count=SCAN_COUNT))
                    await asyncio.sleep(0)  # let it write the command before we parse
                assert isinstance(batch, dict)  # RESP2 and RESP3 alike: field -> value
                skipped += self._load_page(batch)
                if cursor == 0:
                    break
        finally:
            if not page.done():
                page.cancel()
        if skipped:
            logger.warning("revocation feed skipped %d malformed entries in %s",
                           skipped, self.key, extra={"event": "revocation_feed_malformed"})

    def _load_page(self, batch: dict[Any, Any]) -> int:
        """Apply one HSCAN page; returns how many malformed entries it skipped.

        The page's values are parsed as one JSON array, one C call instead of one per entry
        (json.loads per entry was 40% of a million-entry sync). A page that does not parse
        that way, or not into one object per value, is parsed again entry by entry, so a
        malformed entry costs only itself. (Only values that are not JSON on their own could
        combine into an array of the same length and shift entries; the broker's cjson never
        writes one, and whoever can write the hash can delete revocations anyway.)
        """
        fields, raws = list(batch), list(batch.values())
        try:
            parsed = json.loads(b"[" + b",".join(raws) + b"]")
            if len(parsed) != len(raws) or not all(type(d) is dict for d in parsed):
                raise ProtocolError("page is not one object per value")
        except (ValueError, TypeError):
            parsed = [self._parse_entry(raw) for raw in raws]
        skipped, now = 0, self._clock()
        for field, data in zip(fields, parsed, strict=True):
            try:
                name = field.decode() if isinstance(field, bytes) else field
                self._apply(name, data["c"], data["f"], now)
            except (ValueError, KeyError, TypeError):
                skipped += 1
        return skipped

    @staticmethod
    def _parse_entry(raw: Any) -> dict[str, Any] | None:
        try:
            data = json.loads(raw)
        except (ValueError, TypeError):
            return None
        return data if isinstance(data, dict) else None  # None: counted as skipped

    def _on_message(self, message: dict[str, Any]) -> str:
        kind = str(message["type"])
        if kind == "pong":
            sent = self._pings.popleft() if self._pings else time.monotonic()
            self._last_heard = max(self._last_heard, sent)
        elif kind == "message":
            self._apply_message(message["data"])
            if self._following:
                self._last_heard = time.monotonic()
        return kind

    def _apply_message(self, raw: bytes) -> None:
        """A malformed message raises: the copy may have missed a revocation, so resync."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != PROTOCOL_VERSION:
                raise ProtocolError("not a version 1 revocation message")
            for field, cutoff, forget_at, *_ in data["entries"]:
                if not isinstance(field, str):
                    raise ProtocolError("field must be a string")
                self._apply(field, cutoff, forget_at)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed revocation message ({type(exc).__name__})") from None

    def _apply(self, field: str, cutoff: object, forget_at: object,
               now: float | None = None) -> None:
        c, f = _number(cutoff), _number(forget_at)
        if f < (self._clock() if now is None else now):
            return  # nothing it covers can still be valid
        old = self._entries.get(field)
        if old is not None:
            if c <= old[0] and f <= old[1]:
                return
            c, f = max(c, old[0]), max(f, old[1])
        self._entries[field] = (c, c if c == f else f)  # one int object when equal (jti, sid)
        if old is None or f // BUCKET_SECONDS != old[1] // BUCKET_SECONDS:
            bucket = f // BUCKET_SECONDS
            fields = self._buckets.get(bucket)
            if fields is None:
                self._buckets[bucket] = fields = []
                heapq.heappush(self._due, bucket)
            fields.append(field)

    def _sweep(self) -> None:
        """Forget the entries of every bucket that ended: all their forget_at have passed,
        unless an entry was since widened into a later bucket (checked one by one)."""
        now = self._clock()
        while self._due and (self._due[0] + 1) * BUCKET_SECONDS <= now:
            for field in self._buckets.pop(heapq.heappop(self._due)):
                entry = self._entries.get(field)
                if entry is not None and entry[1] < now:
                    del self._entries[field]
