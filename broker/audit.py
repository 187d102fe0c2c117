"""The audit trail's records: what each exchange granted and dropped, and each revocation.

Pure: stores append these as JSON and answer queries; this module says what a record holds
and whether it matches a query. Records carry identifiers and decisions, never token contents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.revocation import Revocation
from broker.sessions import SessionRecord

EXCHANGE = "exchange"
REVOCATION = "revocation"
MAX_QUERY_LIMIT = 1000


def exchange_event(session: SessionRecord) -> dict[str, Any]:
    return {
        "type": EXCHANGE,
        "at": session.created_at,
        "user": session.subject,
        "issuer": session.issuer,
        "agent": session.agent,
        "actors": list(session.actors),
        "sid": session.sid,
        "parent_sid": session.parent_sid,
        "root_sid": session.root_sid,
        "resource": session.resource,
        "granted": list(session.scopes_granted),
        "dropped": [{"scope": d.scope, "reason": d.reason} for d in session.scopes_dropped],
        "expires_at": session.expires_at,
    }


def revocation_event(revocation: Revocation, *, user: str | None,
                     agent: str | None) -> dict[str, Any]:
    """`user` and `agent` name who the revocation is about, for the per-subject streams."""
    return {
        "type": REVOCATION,
        "at": revocation.revoked_at,
        "user": user,
        "agent": agent,
        "revocation_id": revocation.id,
        "target": revocation.target.describe(),
        "revoked_by": revocation.revoked_by,
        "reason": revocation.reason,
    }


@dataclass(frozen=True, slots=True)
class AuditQuery:
    user: str | None = None
    agent: str | None = None
    """The acting agent of an exchange (the last of its chain), or the agent a revocation names."""
    type: str | None = None
    since: int | None = None
    """Epoch seconds, inclusive."""
    until: int | None = None
    """Epoch seconds, inclusive."""
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        if self.type not in (None, EXCHANGE, REVOCATION):
            raise ValueError(f"type must be {EXCHANGE!r} or {REVOCATION!r}")

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Time bounds are the store's job (stream ids); this checks the rest."""
        if self.type is not None and event.get("type") != self.type:
            return False
        if self.user is not None and event.get("user") != self.user:
            return False
        return self.agent is None or event.get("agent") == self.agent
