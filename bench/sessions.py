"""Live agent sessions written straight into Redis in the broker's key layout, and cleanup.

A million sessions through the token endpoint would take many minutes and measure the
endpoint, when the question is whether the exchange slows down as Redis fills. So the loader
writes what `broker.stores.redis_sessions.RedisSessionStore.open_session` (the OPEN_SESSION
Lua script) writes for a root session, pipelined:

    <prefix>session:<sid>            the SessionRecord JSON (`SessionRecord.to_json`), EX ttl
    <prefix>jti:<jti>                sid, EX ttl
    <prefix>sessions:all             ZSET sid -> expires_at   (trimmed by every exchange)
    <prefix>sessions:user:<sub>      ZSET sid -> expires_at   (trimmed by every exchange)
    <prefix>sessions:agent:<agent>   ZSET sid -> expires_at   (trimmed by every exchange)
    <prefix>audit, audit:agent:<id>  the audit streams, filled to their MAXLEN caps

Sessions are spread over `users` subjects (the bench's own subjects among them) and all
belong to one agent, research-agent, the one the measure exchanges for: its index is as
large as `sessions:all`, the worst case. Every session expires between 10 and 60 minutes
from now, so none expires during a measure. `add_backlog` adds index entries whose sessions
are already gone (their records expired): what the next exchange's trim finds after a
quiet period.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Sequence

import redis

from broker.config import AuditSettings
from broker.sessions import SessionRecord
from broker.stores.redis import RedisKeys
from tests.integration.conftest import CRM

AGENT = "research-agent"
CHUNK = 5_000  # sessions per pipeline round trip
_SID, _JTI, _SUB, _EXP = "@@SID@@", "@@JTI@@", "@@SUB@@", 1_999_999_999


def _record_template(issuer: str) -> str:
    """One real record's JSON, with placeholders where each session differs."""
    now = int(time.time())
    record = SessionRecord(
        sid=_SID, subject=_SUB, issuer=issuer, agent=AGENT, actors=(AGENT,), resource=CRM,
        scopes_granted=("crm:read",), scopes_dropped=(), parent_sid=None, root_sid=_SID,
        jti=_JTI, roles=("sales_rep",), created_at=now, expires_at=_EXP,
        lineage_expires_at=now + 86_400,
        principal_attr={"sub": _SUB, "roles": ["sales_rep"], "email": "rep@example.com",
                        "email_verified": True, "name": "A Sales Rep"},
    )
    return record.to_json()


def load_sessions(redis_url: str, prefix: str, count: int, *, issuer: str,
                  subjects: Sequence[str] = (), users: int = 10_000,
                  audit_cap: int | None = None) -> None:
    """Write `count` live root sessions under `prefix`, and the audit streams at their caps
    (or at `audit_cap` entries, for a quick run)."""
    template = _record_template(issuer)
    audit = AuditSettings()
    now = int(time.time())
    names = [*subjects, *(f"user-{n:05d}" for n in range(max(0, users - len(subjects))))]
    rng = random.Random(6)  # noqa: S311 - spreading test data, not security
    keys = RedisKeys(prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for start in range(0, count, CHUNK):
            by_user: dict[str, dict[str, int]] = {}
            every: dict[str, int] = {}
            for _ in range(min(CHUNK, count - start)):
                sid, jti = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
                sub, exp = rng.choice(names), now + rng.randint(600, 3600)
                record = (template.replace(_SID, sid).replace(_JTI, jti).replace(_SUB, sub)
                          .replace(str(_EXP), str(exp)))
                pipe.set(keys.session(sid), record, ex=exp - now)
                pipe.set(keys.jti(jti), sid, ex=exp - now)
                every[sid] = exp
                by_user.setdefault(sub, {})[sid] = exp
            pipe.zadd(keys.all_sessions(), every)
            pipe.zadd(keys.by_agent(AGENT), every)
            for sub, sids in by_user.items():
                pipe.zadd(keys.by_user(sub), sids)
            pipe.execute()
        _fill_audit(pipe, keys, template, audit, audit_cap)
        pipe.execute()
        stored = client.zcard(keys.all_sessions())
    finally:
        client.close()
    if stored != count:
        raise RuntimeError(f"{keys.all_sessions()} holds {stored} entries, not {count}")


def add_backlog(redis_url: str, prefix: str, count: int) -> None:
    """`count` entries of sessions that expired in the last hour, in the all-sessions and
    agent indexes (the ones every exchange trims), their records already gone."""
    now = int(time.time())
    rng = random.Random(count)  # noqa: S311 - spreading test data, not security
    keys = RedisKeys(prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for start in range(0, count, CHUNK):
            stale = {secrets.token_urlsafe(16): now - rng.randint(1, 3600)
                     for _ in range(min(CHUNK, count - start))}
            pipe.zadd(keys.all_sessions(), stale)
            pipe.zadd(keys.by_agent(AGENT), stale)
            pipe.execute()
    finally:
        client.close()


def _fill_audit(pipe: redis.client.Pipeline, keys: RedisKeys, template: str,
                audit: AuditSettings, cap: int | None) -> None:
    """The audit streams at their caps, as after a million exchanges."""
    event = json.dumps({"event": "exchange", "session": json.loads(template)})
    for key, limit in ((keys.audit, audit.max_len),
                       (keys.audit_by_agent(AGENT), audit.per_subject_max_len)):
        for n in range(min(limit, cap or limit)):
            pipe.xadd(key, {"r": event})
            if n % CHUNK == CHUNK - 1:
                pipe.execute()


def forget_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under `prefix` (UNLINK: freed in Redis' background thread)."""
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted
