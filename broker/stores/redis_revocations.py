"""Revocations in Redis: written by one Lua script, read by the broker and every mcp_plugin.

`revoke` runs `redis_scripts.REVOKE`: entries (sessions expanded to all their descendants),
pruning of entries nobody needs any more, the revocation record, the audit records and the
pub/sub message, all in one atomic step. docs/revocation-protocol.md is the format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from broker import audit
from broker.config import AuditSettings
from broker.ports import Clock
from broker.revocation import RevocationPlan
from broker.stores.redis import RedisEdge, RedisKeys, text
from broker.stores.redis_scripts import REVOKE


@dataclass(frozen=True, slots=True)
class RevocationInfo:
    record: dict[str, Any]
    """`Revocation.to_dict()`: id, target, revoked_by, revoked_at, reason."""
    entries: int
    forget_at: int


def cutoffs_from(fields: Sequence[str], raws: Sequence[Any]) -> dict[str, int | None]:
    """An HMGET of the revocation hash as field -> cutoff (None: not revoked)."""
    return {f: (None if raw is None else int(json.loads(raw)["c"]))
            for f, raw in zip(fields, raws, strict=True)}


class RedisRevocationStore(RedisEdge):
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, timeout_ms: int, clock: Clock,
                 audit_settings: AuditSettings | None = None) -> None:
        super().__init__(client, keys, timeout_ms, clock)
        self._audit = audit_settings or AuditSettings()
        self._revoke = client.register_script(REVOKE)

    async def revoke(self, plan: RevocationPlan, *, user: str | None = None,
                     agent: str | None = None) -> int:
        """Apply `plan`; return how many entries were written (descendants included).

        `user` and `agent` say whom the revocation concerns, for the audit trail's
        per-user and per-agent streams (e.g. a session's owner and agent).
        """
        keys, rev = self._keys, plan.revocation
        now = int(self._clock())
        event = audit.revocation_event(rev, user=user, agent=agent)
        script_keys = [
            keys.revoked, keys.revoked_forget, keys.revocation(rev.id), keys.revocations,
            keys.audit, keys.audit_by_user(user or ""), keys.audit_by_agent(agent or ""),
        ]
        args: list[str | int] = [
            now, keys.revoked, keys.prefix, rev.id, plan.child_forget_leeway,
            json.dumps(rev.to_dict(), separators=(",", ":")),
            json.dumps(event, separators=(",", ":")),
            self._audit.max_len, self._audit.per_subject_max_len, self._audit.retention_seconds,
            "1" if user else "0", "1" if agent else "0", len(plan.entries),
        ]
        for entry in plan.entries:
            args += [entry.field, entry.cutoff, entry.forget_at]
        args += [len(plan.cascade_from), *plan.cascade_from]
        written = await self._call(self._revoke(keys=script_keys, args=args))
        return int(written)

    async def cutoffs(self, fields: Sequence[str]) -> dict[str, int | None]:
        """The cutoff of each field's entry (None: not revoked); one HMGET."""
        if not fields:
            return {}
        raws = await self._call(self._redis.hmget(self._keys.revoked, list(fields)))
        return cutoffs_from(fields, raws)

    async def list_revocations(self, limit: int = 100) -> list[RevocationInfo]:
        """Revocations still within the audit retention, newest first."""
        rids = await self._call(self._redis.zrevrange(self._keys.revocations, 0, limit - 1))
        pipe = self._redis.pipeline(transaction=False)
        for rid in rids:
            pipe.hgetall(self._keys.revocation(text(rid)))
        rows = await self._call(pipe.execute()) if rids else []
        out = []
        for row in rows:
            if row:
                out.append(RevocationInfo(json.loads(row[b"r"]), int(row[b"n"]),
                                          int(row[b"f"])))
        return out

    async def entry_count(self) -> int:
        return int(await self._call(self._redis.hlen(self._keys.revoked)))
