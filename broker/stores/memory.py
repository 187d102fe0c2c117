"""In-memory stores: the reference implementation of the store ports, for unit tests.

Integration and end-to-end tests use Redis; these exist so the grant's logic can be tested
alone, the way fosite ships its memory store. `fail` simulates an unreachable dependency.
"""

from __future__ import annotations

from broker.errors import DependencyUnavailable
from broker.ports import Clock
from broker.revocation import Revoked, TokenFacts, check_revoked
from broker.sessions import SessionRecord


class MemorySessionStore:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionRecord] = {}
        self.cutoffs: dict[str, int] = {}
        """Revocation entries, field -> cutoff (docs/revocation-protocol.md)."""
        self.fail = False

    async def open_session(self, record: SessionRecord, *, material: TokenFacts) -> None:
        if self.fail:
            raise DependencyUnavailable("memory store set to fail")
        hit = check_revoked(material, dict(self.cutoffs))
        if hit is not None:
            raise Revoked(hit)
        self.sessions[record.sid] = record

    async def get_session(self, sid: str) -> SessionRecord | None:
        if self.fail:
            raise DependencyUnavailable("memory store set to fail")
        return self.sessions.get(sid)


class MemoryReplayCache:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._seen: dict[str, int] = {}

    async def first_use(self, key: str, expires_at: int) -> bool:
        now = self._clock()
        if self._seen.get(key, 0) > now:
            return False
        self._seen[key] = expires_at
        return True
