"""The agent session: what one exchange granted, to whom, for whom, and why the rest was dropped.

Pure data with a JSON form; stores decide where it lives. Admins read these records to see
and revoke what agents hold, so every field is meant for a human as much as for code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class DroppedScope:
    scope: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    sid: str
    subject: str
    issuer: str
    agent: str
    actors: tuple[str, ...]
    """The agent chain in order of delegation: the first agent first, this session's agent last."""
    resource: str
    scopes_granted: tuple[str, ...]
    scopes_dropped: tuple[DroppedScope, ...]
    parent_sid: str | None
    root_sid: str
    jti: str
    roles: tuple[str, ...]
    created_at: int
    expires_at: int
    """When this session's token expires; the session record lives as long."""
    lineage_expires_at: int
    """No token in this delegation lineage may outlive this (`session_ttl_seconds`)."""
    principal_attr: dict[str, Any] = field(default_factory=dict)
    """The user's upstream claims at the root exchange, for policy decisions on re-delegation."""

    @property
    def depth(self) -> int:
        return len(self.actors)

    def to_json(self) -> str:
        # By hand rather than dataclasses.asdict, which deep-copies every value on the way:
        # it was about 5% of an exchange's CPU in the bench profile (docs/performance.md).
        # Same JSON: tuples become arrays, a dropped scope an object.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["scopes_dropped"] = [{"scope": d.scope, "reason": d.reason}
                                  for d in self.scopes_dropped]
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> SessionRecord:
        data = json.loads(raw)
        data["actors"] = tuple(data["actors"])
        data["scopes_granted"] = tuple(data["scopes_granted"])
        data["roles"] = tuple(data["roles"])
        data["scopes_dropped"] = tuple(DroppedScope(**d) for d in data["scopes_dropped"])
        return cls(**data)


_FIELDS = tuple(f.name for f in fields(SessionRecord))
