"""The audit trail in Redis streams: one for everything, one per user, one per agent.

Every stream is trimmed (`MAXLEN ~`) on write by the session and revocation scripts, so
memory stays bounded. A query reads the most specific stream newest first, between the time
bounds (stream ids are milliseconds), and filters the rest in Python, scanning at most
`MAX_SCAN` records so one query cannot walk the whole trail.
"""

from __future__ import annotations

import json
from typing import Any

from broker.audit import AuditQuery
from broker.stores.redis import RedisEdge, text

BATCH = 200
MAX_SCAN = 20_000


class RedisAuditLog(RedisEdge):
    async def query(self, query: AuditQuery) -> list[dict[str, Any]]:
        keys = self._keys
        stream = (keys.audit_by_user(query.user) if query.user is not None
                  else keys.audit_by_agent(query.agent) if query.agent is not None
                  else keys.audit)
        upper = "+" if query.until is None else f"{query.until * 1000 + 999}"
        lower = "-" if query.since is None else f"{query.since * 1000}"
        out: list[dict[str, Any]] = []
        scanned = 0
        while len(out) < query.limit and scanned < MAX_SCAN:
            reply: Any = await self._call(self._redis.xrevrange(stream, upper, lower, count=BATCH))
            batch: list[Any] = reply or []
            if not batch:
                break
            for stream_id, fields in batch:
                event = json.loads(fields[b"r"])
                if b"n" in fields:
                    event["entries"] = int(fields[b"n"])
                event["id"] = text(stream_id)
                if query.matches(event):
                    out.append(event)
                    if len(out) == query.limit:
                        break
            scanned += len(batch)
            if len(batch) < BATCH:
                break
            upper = "(" + text(batch[-1][0])  # exclusive: continue below the last id read
        return out
