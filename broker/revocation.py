"""Revocation: what an admin's kill switch covers, as entries every component applies alike.

A revocation becomes one or more *entries*, each a field naming what it hits and a cutoff:
a token whose `iat` is at or before the cutoff of any entry matching it is revoked.

- `jti:<jti>` one token, `sid:<sid>` one session (the store adds one per descendant): the
  cutoff is the entry's `forget_at`, so every token of that jti or session is covered.
- `user:<sub>`, `agent:<client_id>`, `pair:<client_id> <sub>`: the cutoff is the moment of
  revocation, so a fresh login afterwards works again. An agent entry also hits tokens where
  that agent is anywhere in the actor chain: its sub-agents act on its authority.

`forget_at` is when no token the entry covers can still be valid; after it the entry is
dropped everywhere, so memory stays bounded by the live tokens. The broker applies the same
entries to subject tokens (an upstream token issued before a user or agent revocation cannot
be exchanged again), which is why user and agent entries are kept for a retention period
rather than one token lifetime.

This is the wire format mcp_plugin reads from Redis (docs/revocation-protocol.md); client ids
cannot contain a space (config validation), so `pair:` fields split unambiguously.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.claims import AgentToken


class Revoked(Exception):
    """The token or subject material is covered by a revocation; args[0] is the entry field."""


class TargetKind(StrEnum):
    TOKEN = "token"
    SESSION = "session"
    USER = "user"
    AGENT = "agent"
    USER_AGENT = "user_agent"


def token_field(jti: str) -> str:
    return f"jti:{jti}"


def session_field(sid: str) -> str:
    return f"sid:{sid}"


def user_field(subject: str) -> str:
    return f"user:{subject}"


def agent_field(client_id: str) -> str:
    return f"agent:{client_id}"


def pair_field(subject: str, client_id: str) -> str:
    return f"pair:{client_id} {subject}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the revocation set: tokens matching `field` with iat <= cutoff are revoked."""

    field: str
    cutoff: int
    forget_at: int
    revocation_id: str

    def to_wire(self) -> str:
        return json.dumps({"c": self.cutoff, "f": self.forget_at, "r": self.revocation_id},
                          separators=(",", ":"))

    @classmethod
    def from_wire(cls, field: str, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        return cls(field=field, cutoff=int(data["c"]), forget_at=int(data["f"]),
                   revocation_id=str(data.get("r", "")))


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What revocation can depend on, from an agent token or an exchange's subject material."""

    subject: str
    actors: tuple[str, ...]
    """The whole agent chain, the token's own client included."""
    issued_at: int
    jti: str | None = None
    sid: str | None = None


def token_facts(token: AgentToken) -> TokenFacts:
    """The facts of one of this broker's agent tokens."""
    return TokenFacts(subject=token.subject, actors=token.chain, issued_at=token.issued_at,
                      jti=token.jti, sid=token.sid)


def fields_for(facts: TokenFacts) -> list[str]:
    """Every entry field that could cover a token with these facts (a handful: one per actor)."""
    fields = [user_field(facts.subject)]
    if facts.jti is not None:
        fields.append(token_field(facts.jti))
    if facts.sid is not None:
        fields.append(session_field(facts.sid))
    for agent in dict.fromkeys(facts.actors):
        fields += (agent_field(agent), pair_field(facts.subject, agent))
    return fields


def check_revoked(facts: TokenFacts, cutoffs: Mapping[str, int | None]) -> str | None:
    """The first field whose cutoff covers the token, or None; `cutoffs` maps fields to cutoffs."""
    for field in fields_for(facts):
        cutoff = cutoffs.get(field)
        if cutoff is not None and facts.issued_at <= cutoff:
            return field
    return None


@dataclass(frozen=True, slots=True)
class RevocationTarget:
    """What an admin asked to revoke: exactly one grain."""

    kind: TargetKind
    subject: str | None = None
    agent: str | None = None
    sid: str | None = None
    jti: str | None = None

    @classmethod
    def build(cls, *, user: str | None = None, agent: str | None = None,
              session: str | None = None, token: str | None = None) -> RevocationTarget:
        """One of: token, session, user, agent, or user and agent together; else ValueError."""
        given = {k for k, v in (("user", user), ("agent", agent), ("session", session),
                                ("token", token)) if v}
        if given == {"token"}:
            return cls(TargetKind.TOKEN, jti=token)
        if given == {"session"}:
            return cls(TargetKind.SESSION, sid=session)
        if given == {"user"}:
            return cls(TargetKind.USER, subject=user)
        if given == {"agent"}:
            return cls(TargetKind.AGENT, agent=agent)
        if given == {"user", "agent"}:
            return cls(TargetKind.USER_AGENT, subject=user, agent=agent)
        raise ValueError("name one token, one session, a user, an agent, or a user and an agent")

    @property
    def field(self) -> str:
        """The entry field this target writes (docs/revocation-protocol.md)."""
        if self.kind is TargetKind.TOKEN and self.jti:
            return token_field(self.jti)
        if self.kind is TargetKind.SESSION and self.sid:
            return session_field(self.sid)
        if self.kind is TargetKind.USER and self.subject:
            return user_field(self.subject)
        if self.kind is TargetKind.AGENT and self.agent:
            return agent_field(self.agent)
        if self.kind is TargetKind.USER_AGENT and self.subject and self.agent:
            return pair_field(self.subject, self.agent)
        raise ValueError(f"a {self.kind.value} revocation lacks what it names")

    def describe(self) -> dict[str, str]:
        out = {"kind": self.kind.value}
        for name in ("subject", "agent", "sid", "jti"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Revocation:
    """Who revoked what, when and why: the audit record and the source of the entries."""

    id: str
    target: RevocationTarget
    revoked_by: str
    revoked_at: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "target": self.target.describe(), "revoked_by": self.revoked_by,
                "revoked_at": self.revoked_at, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RevocationPlan:
    revocation: Revocation
    entries: tuple[Entry, ...]
    cascade_from: tuple[str, ...]
    """Sessions whose descendants the store also revokes (found in Redis, atomically)."""
    child_forget_leeway: int
    """Added to each descendant's own expiry to get its entry's forget_at."""


MAX_REASON_LENGTH = 500


def new_revocation_id() -> str:
    return "rev_" + secrets.token_urlsafe(12)


def plan_revocation(
    target: RevocationTarget,
    *,
    revoked_by: str,
    reason: str,
    now: int,
    token_ttl: int,
    retention: int,
    leeway: int,
    expires_at: int | None = None,
    token_session: str | None = None,
    revocation_id: str | None = None,
) -> RevocationPlan:
    """Turn a target into entries (pure; the store expands sessions into their descendants).

    `expires_at` is the covered token's or session's own expiry when known; otherwise the
    entry lives as long as any token issued now could. `token_session` is the session of a
    token target, when known: it is revoked with the token, descendants included. User and
    agent cutoffs are kept for `retention` so that older upstream tokens cannot be exchanged
    again.
    """
    rid = revocation_id or new_revocation_id()
    reason = reason.strip()[:MAX_REASON_LENGTH]
    revocation = Revocation(rid, target, revoked_by, now, reason)
    token_forget = (expires_at if expires_at is not None else now + token_ttl) + leeway
    cutoff_forget = now + max(token_ttl, retention) + leeway
    if target.kind in (TargetKind.TOKEN, TargetKind.SESSION):
        cutoff, forget = token_forget, token_forget
    else:
        cutoff, forget = now, cutoff_forget
    entries = [Entry(target.field, cutoff, forget, rid)]
    cascade = (target.sid,) if target.sid is not None else ()
    if target.kind is TargetKind.TOKEN and token_session is not None:
        entries.append(Entry(session_field(token_session), cutoff, forget, rid))
        cascade = (token_session,)
    return RevocationPlan(revocation, tuple(entries), cascade, leeway)
