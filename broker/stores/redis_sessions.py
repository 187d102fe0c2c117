"""Agent sessions in Redis: opened atomically with their revocation check, listed for admins.

Opening a session is one Lua script (`redis_scripts.OPEN_SESSION`): it refuses when the
exchange's subject material is revoked, else writes the session, its indexes (user, agent,
all, parent's children, jti) and the audit record. So a session is fully recorded or not at
all, in one round trip, and an exchange racing a revocation cannot slip past it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis.asyncio as aioredis

from broker import audit
from broker.config import AuditSettings
from broker.ports import Clock
from broker.revocation import Revoked, TokenFacts, fields_for
from broker.sessions import SessionRecord
from broker.stores.redis import RedisEdge, RedisKeys, text
from broker.stores.redis_revocations import cutoffs_from
from broker.stores.redis_scripts import OPEN_SESSION

MAX_PAGE = 500


class RedisSessionStore(RedisEdge):
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, timeout_ms: int, clock: Clock,
                 audit_settings: AuditSettings | None = None) -> None:
        super().__init__(client, keys, timeout_ms, clock)
        self._audit = audit_settings or AuditSettings()
        self._open = client.register_script(OPEN_SESSION)

    async def open_session(self, record: SessionRecord, *, material: TokenFacts) -> None:
        keys, now = self._keys, int(self._clock())
        fields = fields_for(material)
        parent = record.parent_sid
        script_keys = [
            keys.revoked, keys.session(record.sid), keys.by_user(record.subject),
            keys.by_agent(record.agent), keys.all_sessions(), keys.jti(record.jti),
            keys.children(parent) if parent is not None else keys.children(record.sid),
            keys.audit, keys.audit_by_user(record.subject), keys.audit_by_agent(record.agent),
        ]
        args: list[str | int] = [material.issued_at, len(fields), *fields]
        args += [
            record.to_json(), record.sid, now, record.expires_at, record.lineage_expires_at,
            "1" if parent is not None else "0",
            json.dumps(audit.exchange_event(record), separators=(",", ":")),
            self._audit.max_len, self._audit.per_subject_max_len, self._audit.retention_seconds,
        ]
        hit = await self._call(self._open(keys=script_keys, args=args))
        if hit is not None:
            raise Revoked(hit.decode() if isinstance(hit, bytes) else str(hit))

    async def get_session(self, sid: str) -> SessionRecord | None:
        raw = await self._call(self._redis.get(self._keys.session(sid)))
        return None if raw is None else SessionRecord.from_json(raw)

    async def session_and_cutoffs(self, sid: str, fields: Sequence[str],
                                  ) -> tuple[SessionRecord | None, dict[str, int | None]]:
        """A session and the cutoffs of `fields`, in one round trip (introspection)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._keys.session(sid))
        pipe.hmget(self._keys.revoked, list(fields))
        raw, raws = await self._call(pipe.execute())
        record = None if raw is None else SessionRecord.from_json(raw)
        return record, cutoffs_from(fields, raws)

    async def session_of_token(self, jti: str) -> SessionRecord | None:
        sid = await self._call(self._redis.get(self._keys.jti(jti)))
        return None if sid is None else await self.get_session(text(sid))

    async def get_sessions(self, sids: Sequence[str]) -> list[SessionRecord]:
        if not sids:
            return []
        raws = await self._call(self._redis.mget([self._keys.session(s) for s in sids]))
        return [SessionRecord.from_json(raw) for raw in raws if raw is not None]

    async def list_sessions(self, *, user: str | None = None, agent: str | None = None,
                            offset: int = 0, limit: int = 50,
                            ) -> tuple[list[SessionRecord], int | None]:
        """Live sessions, latest expiry first, and the offset of the next page (None: no more).

        Filtered through the user, agent or all-sessions index; user and agent together read
        the user's index and keep that agent's sessions.
        """
        limit = max(1, min(limit, MAX_PAGE))
        keys = self._keys
        index = (keys.by_user(user) if user is not None
                 else keys.by_agent(agent) if agent is not None else keys.all_sessions())
        out: list[SessionRecord] = []
        now = int(self._clock())
        position = max(offset, 0)
        while True:
            raw = await self._call(self._redis.zrevrangebyscore(
                index, "+inf", now, start=position, num=limit))
            if not raw:
                return out, None
            sids = [text(s) for s in raw]
            found = {r.sid: r for r in await self.get_sessions(sids)}
            for sid in sids:
                position += 1
                record = found.get(sid)
                if record is not None and (agent is None or record.agent == agent):
                    out.append(record)
                    if len(out) == limit:
                        return out, position

    async def children(self, sid: str) -> list[str]:
        raw = await self._call(self._redis.zrange(self._keys.children(sid), 0, -1))
        return [text(s) for s in raw]
