"""Audit records and query matching (pure)."""

from __future__ import annotations

import pytest

from broker.audit import AuditQuery, exchange_event, revocation_event
from broker.revocation import Revocation, RevocationTarget, TargetKind
from broker.sessions import DroppedScope, SessionRecord

SESSION = SessionRecord(
    sid="s1", subject="alice", issuer="https://idp", agent="summarizer",
    actors=("research", "summarizer"), resource="https://crm/mcp",
    scopes_granted=("crm:read",), scopes_dropped=(DroppedScope("crm:delete", "x"),),
    parent_sid="s0", root_sid="s0", jti="secret-ish-jti", roles=("sales_rep",), created_at=10,
    expires_at=20, lineage_expires_at=30, principal_attr={"email": "a@example.com"},
)


def test_an_exchange_record_says_what_was_granted_and_dropped_and_nothing_else() -> None:
    event = exchange_event(SESSION)
    assert event["granted"] == ["crm:read"]
    assert event["dropped"] == [{"scope": "crm:delete", "reason": "x"}]
    assert event["actors"] == ["research", "summarizer"]
    assert "jti" not in event and "principal_attr" not in event


def test_a_revocation_record_names_who_what_and_why() -> None:
    rev = Revocation("rev_1", RevocationTarget(TargetKind.USER, subject="alice"), "root", 5,
                     "left")
    event = revocation_event(rev, user="alice", agent=None)
    assert event == {"type": "revocation", "at": 5, "user": "alice", "agent": None,
                     "revocation_id": "rev_1", "target": {"kind": "user", "subject": "alice"},
                     "revoked_by": "root", "reason": "left"}


@pytest.mark.parametrize(("query", "matches"), [
    (AuditQuery(), True),
    (AuditQuery(user="alice"), True),
    (AuditQuery(user="bob"), False),
    (AuditQuery(agent="summarizer"), True),
    (AuditQuery(agent="research"), False),  # the acting agent, not every actor
    (AuditQuery(type="exchange"), True),
    (AuditQuery(type="revocation"), False),
], ids=str)
def test_queries_match_on_user_agent_and_type(query: AuditQuery, matches: bool) -> None:
    assert query.matches(exchange_event(SESSION)) is matches


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 1001}, {"type": "login"}])
def test_bad_queries_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="must be"):
        AuditQuery(**bad)
