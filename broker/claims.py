"""The agent token's claim set (RFC 9068 profile, RFC 8693 `act` nesting; contract §5).

`chain` is always chronological here: the first agent first, the current actor last. In the
`act` claim the current actor is outermost (RFC 8693 §4.1), so building and parsing reverse it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_CHAIN = 16  # parsing bound: far above any configured depth, stops recursion bombs

REQUIRED = ("iss", "sub", "aud", "client_id", "scope", "act", "sid", "iat", "exp", "jti")


def build_act(chain: Sequence[str]) -> dict[str, Any]:
    if not chain:
        raise ValueError("an agent token always has at least one actor")
    act: dict[str, Any] | None = None
    for agent in chain:  # oldest first, so each newer actor wraps the previous ones
        act = {"sub": agent} if act is None else {"sub": agent, "act": act}
    assert act is not None
    return act


def parse_act(act: object) -> tuple[str, ...]:
    """Return the chronological chain from an `act` claim; ValueError if malformed."""
    newest_first: list[str] = []
    node = act
    while node is not None:
        if not isinstance(node, Mapping) or not isinstance(node.get("sub"), str):
            raise ValueError("act must nest objects with a string sub")
        if len(newest_first) >= MAX_CHAIN:
            raise ValueError("act nests too deeply")
        newest_first.append(node["sub"])
        node = node.get("act")
    if not newest_first:
        raise ValueError("act is empty")
    return tuple(reversed(newest_first))


@dataclass(frozen=True, slots=True)
class AgentToken:
    """A verified agent token of this broker, as the exchange needs it."""

    issuer: str
    subject: str
    audience: str
    client_id: str
    scopes: frozenset[str]
    chain: tuple[str, ...]
    roles: tuple[str, ...]
    sid: str
    jti: str
    issued_at: int
    expires_at: int
    claims: Mapping[str, Any]

    @property
    def depth(self) -> int:
        return len(self.chain)


def build_agent_claims(
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scopes: Sequence[str],
    chain: Sequence[str],
    roles: Sequence[str],
    sid: str,
    jti: str,
    issued_at: int,
    expires_at: int,
    cnf_jkt: str | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "client_id": client_id,
        "scope": " ".join(sorted(scopes)),
        "act": build_act(chain),
        "roles": list(roles),
        "sid": sid,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "jti": jti,
    }
    if cnf_jkt is not None:
        claims["cnf"] = {"jkt": cnf_jkt}
    return claims


def parse_agent_claims(claims: Mapping[str, Any]) -> AgentToken:
    """Check shape and types of a verified claim set; ValueError names the first problem."""
    missing = [name for name in REQUIRED if name not in claims]
    if missing:
        raise ValueError(f"missing claims: {', '.join(missing)}")
    strings = ("iss", "sub", "aud", "client_id", "scope", "sid", "jti")
    for name in strings:
        if not isinstance(claims[name], str) or not claims[name]:
            raise ValueError(f"claim {name} must be a non-empty string")
    for name in ("iat", "exp"):
        if not isinstance(claims[name], int) or isinstance(claims[name], bool):
            raise ValueError(f"claim {name} must be an integer")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ValueError("claim roles must be a list of strings")
    chain = parse_act(claims["act"])
    if chain[-1] != claims["client_id"]:
        raise ValueError("the outermost actor must be the client")
    return AgentToken(
        issuer=claims["iss"],
        subject=claims["sub"],
        audience=claims["aud"],
        client_id=claims["client_id"],
        scopes=frozenset(s for s in claims["scope"].split(" ") if s),
        chain=chain,
        roles=tuple(roles),
        sid=claims["sid"],
        jti=claims["jti"],
        issued_at=claims["iat"],
        expires_at=claims["exp"],
        claims=claims,
    )
