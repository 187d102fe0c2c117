"""What admins do with agent sessions, over the Redis stores: the one place that knows how.

The HTTP admin API and the CLI both call `AdminService`; each authenticates and authorizes
its caller first (Cerbos for HTTP, Redis access for the CLI). Revocation plans are built by
the pure `broker.revocation` and applied by one Lua script (see the stores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from broker.audit import AuditQuery
from broker.claims import AgentToken
from broker.config import BrokerSettings
from broker.ports import Clock
from broker.revocation import (
    Revocation,
    RevocationTarget,
    TargetKind,
    TokenFacts,
    check_revoked,
    fields_for,
    plan_revocation,
    token_facts,
)
from broker.sessions import SessionRecord
from broker.stores.redis import RedisKeys, connect
from broker.stores.redis_audit import RedisAuditLog
from broker.stores.redis_revocations import RedisRevocationStore, RevocationInfo
from broker.stores.redis_sessions import RedisSessionStore


def session_facts(record: SessionRecord) -> TokenFacts:
    return TokenFacts(subject=record.subject, actors=record.actors, issued_at=record.created_at,
                      jti=record.jti, sid=record.sid)


@dataclass(frozen=True, slots=True)
class SessionStatus:
    record: SessionRecord
    revoked_by: str | None
    """The revocation entry covering this session's token, if any (e.g. `user:alice`)."""

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "sid": r.sid, "user": r.subject, "issuer": r.issuer, "agent": r.agent,
            "actors": list(r.actors), "resource": r.resource, "scopes": list(r.scopes_granted),
            "dropped": [{"scope": d.scope, "reason": d.reason} for d in r.scopes_dropped],
            "parent_sid": r.parent_sid, "root_sid": r.root_sid, "depth": r.depth,
            "created_at": r.created_at, "expires_at": r.expires_at,
            "status": "revoked" if self.revoked_by else "active",
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True, slots=True)
class RevocationOutcome:
    revocation: Revocation
    entries: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.revocation.to_dict(), "entries": self.entries}


class AdminService:
    def __init__(self, settings: BrokerSettings, *, sessions: RedisSessionStore,
                 revocations: RedisRevocationStore, audit: RedisAuditLog, clock: Clock,
                 client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.sessions, self.revocations, self.audit_log = sessions, revocations, audit
        self._clock = clock
        self._own_client = client
        """Closed by `aclose` when this service opened it (the CLI); else the app owns it."""

    async def aclose(self) -> None:
        if self._own_client is not None:
            await self._own_client.aclose()

    async def list_sessions(self, *, user: str | None = None, agent: str | None = None,
                            offset: int = 0, limit: int = 50,
                            ) -> tuple[list[SessionStatus], int | None]:
        records, next_offset = await self.sessions.list_sessions(
            user=user, agent=agent, offset=offset, limit=limit)
        return await self.statuses(records), next_offset

    async def session(self, sid: str) -> SessionStatus | None:
        record = await self.sessions.get_session(sid)
        if record is None:
            return None
        return (await self.statuses([record]))[0]

    async def children(self, sid: str) -> list[str]:
        return await self.sessions.children(sid)

    async def statuses(self, records: list[SessionRecord]) -> list[SessionStatus]:
        """Each session with the revocation covering it: one HMGET for the whole page."""
        facts = [session_facts(r) for r in records]
        cutoffs = await self.revocations.cutoffs(sorted({f for x in facts for f in fields_for(x)}))
        return [SessionStatus(r, check_revoked(x, cutoffs)) for r, x in zip(records, facts,
                                                                           strict=True)]

    async def is_active(self, token: AgentToken) -> bool:
        """A verified token is active while its session is live and nothing revokes it."""
        facts = token_facts(token)
        record, cutoffs = await self.sessions.session_and_cutoffs(token.sid, fields_for(facts))
        return (record is not None and record.jti == token.jti
                and check_revoked(facts, cutoffs) is None)

    async def revoke(self, target: RevocationTarget, *, revoked_by: str, reason: str = "",
                     expires_at: int | None = None, session: SessionRecord | None = None,
                     ) -> RevocationOutcome:
        """Revoke `target`; `session` (the record of a session target) names whom it concerns
        in the audit trail and bounds how long its entry is kept."""
        settings = self.settings
        if session is None and target.kind is TargetKind.TOKEN and target.jti is not None:
            session = await self.sessions.session_of_token(target.jti)
        if session is not None and expires_at is None:
            expires_at = session.expires_at
        plan = plan_revocation(
            target, revoked_by=revoked_by, reason=reason, now=int(self._clock()),
            token_ttl=settings.token_ttl_seconds, retention=settings.revocation_retention_seconds,
            leeway=settings.clock_leeway_seconds, expires_at=expires_at,
            token_session=session.sid if session is not None else None,
        )
        user = session.subject if session is not None else target.subject
        agent = session.agent if session is not None else target.agent
        entries = await self.revocations.revoke(plan, user=user, agent=agent)
        return RevocationOutcome(plan.revocation, entries)

    async def revoke_session(self, sid: str, *, revoked_by: str,
                             reason: str = "") -> RevocationOutcome | None:
        """Revoke one session and all its descendants; None if no such live session."""
        record = await self.sessions.get_session(sid)
        if record is None:
            return None
        return await self.revoke(RevocationTarget(TargetKind.SESSION, sid=sid),
                                 revoked_by=revoked_by, reason=reason, session=record)

    async def list_revocations(self, limit: int = 100) -> list[RevocationInfo]:
        return await self.revocations.list_revocations(limit)

    async def audit(self, query: AuditQuery) -> list[dict[str, Any]]:
        return await self.audit_log.query(query)

    def agents(self) -> list[dict[str, Any]]:
        return [
            {"client_id": a.client_id, "auth_method": a.auth.method, "scopes": a.scopes,
             "resources": a.resources, "may_delegate_to": a.may_delegate_to,
             "dpop_bound": a.dpop_bound}
            for a in self.settings.agents
        ]


def connect_admin_service(settings: BrokerSettings, clock: Clock) -> AdminService:
    """An AdminService with its own Redis connection (the CLI's); `aclose()` when done."""
    client = connect(settings.redis_url, settings.redis_timeout_ms)
    edge = (client, RedisKeys(settings.redis_key_prefix), settings.redis_timeout_ms, clock)
    return AdminService(
        settings, sessions=RedisSessionStore(*edge, audit_settings=settings.audit),
        revocations=RedisRevocationStore(*edge, audit_settings=settings.audit),
        audit=RedisAuditLog(*edge), clock=clock, client=client,
    )
