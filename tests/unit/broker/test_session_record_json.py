"""`SessionRecord.to_json` is written by hand for speed; it must stay the JSON that
`dataclasses.asdict` gave (records already in Redis are read back with `from_json`)."""

from __future__ import annotations

import json
from dataclasses import asdict

from broker.sessions import DroppedScope, SessionRecord


def _record() -> SessionRecord:
    return SessionRecord(
        sid="s1", subject="alice", issuer="http://idp.test", agent="summarizer-agent",
        actors=("research-agent", "summarizer-agent"), resource="http://crm.test/mcp",
        scopes_granted=("crm:read",),
        scopes_dropped=(DroppedScope("crm:write", "not_delegable"),
                        DroppedScope("email:send", "not_declared")),
        parent_sid="s0", root_sid="s0", jti="j1", roles=("sales_rep", "user"), created_at=10,
        expires_at=20, lineage_expires_at=30,
        principal_attr={"email": "a@example.com", "groups": ["x", "y"], "nested": {"k": [1]}},
    )


def test_to_json_is_what_asdict_gave() -> None:
    record = _record()
    expected = json.dumps(asdict(record), separators=(",", ":"), sort_keys=True)
    assert record.to_json() == expected


def test_to_json_round_trips() -> None:
    record = _record()
    assert SessionRecord.from_json(record.to_json()) == record
