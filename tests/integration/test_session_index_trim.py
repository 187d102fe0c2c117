"""The session indexes are trimmed a little at every exchange, never all at once.

Sessions that expire while nobody exchanges stay in the all-sessions and agent indexes until
the next exchange. Removing a night's worth in one Lua script blocked Redis for about 100 ms
per 100,000 entries (make bench, session_scale); OPEN_SESSION now removes at most 100
expired entries per index per exchange, and a backlog drains over the next exchanges.
"""

from __future__ import annotations

import secrets
import time

import pytest
import redis.asyncio as aioredis

from broker.revocation import TokenFacts
from broker.sessions import SessionRecord
from broker.stores.redis import RedisKeys
from broker.stores.redis_sessions import RedisSessionStore

pytestmark = pytest.mark.integration
TRIM = 100


def _record(now: int, subject: str = "alice") -> SessionRecord:
    sid = secrets.token_urlsafe(8)
    return SessionRecord(
        sid=sid, subject=subject, issuer="http://idp.test", agent="research-agent",
        actors=("research-agent",), resource="http://127.0.0.1:8401/mcp",
        scopes_granted=("crm:read",), scopes_dropped=(), parent_sid=None, root_sid=sid,
        jti=secrets.token_urlsafe(8), roles=("sales_rep",), created_at=now,
        expires_at=now + 600, lineage_expires_at=now + 3600,
    )


async def test_an_exchange_trims_at_most_100_expired_entries_per_index(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    keys = RedisKeys(f"trim-{secrets.token_hex(4)}:")
    now = int(time.time())
    store = RedisSessionStore(client, keys, 2000, lambda: float(now))
    backlog = {f"gone-{n}": now - 1 - n for n in range(250)}
    await client.zadd(keys.all_sessions(), backlog)
    await client.zadd(keys.by_agent("research-agent"), backlog)
    try:
        sizes = []
        for _ in range(4):
            record = _record(now)
            await store.open_session(record, material=TokenFacts(
                subject=record.subject, actors=record.actors, issued_at=now - 10))
            sizes.append(await client.zcard(keys.all_sessions()))
        live = await client.zcount(keys.all_sessions(), now + 1, "+inf")
        agent_index = await client.zcard(keys.by_agent("research-agent"))
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{keys.prefix}*")])
        await client.aclose()
    # each exchange adds its own session and removes up to 100 of the expired ones
    assert sizes == [250 - TRIM + 1, 250 - 2 * TRIM + 2, 250 - 250 + 3, 4]
    assert live == 4
    assert agent_index == 4
