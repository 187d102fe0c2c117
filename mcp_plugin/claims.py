"""The agent token's claims as mcp_plugin reads them (contract §5; RFC 9068, RFC 8693 `act`).

These claim names are the whole interface between the broker and an MCP server: mcp_plugin
never imports the broker, and a unit test pins this list against the contract. Pure: no I/O,
no framework, no clock (time checks live in the verifier, which owns the clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid", "act")
"""Every agent token carries these; a token without one of them is refused."""

MAX_ACT_DEPTH = 16
"""Parsing bound for nested `act` objects: far above any delegation depth, stops bombs."""

_NON_EMPTY_STRINGS = ("iss", "sub", "client_id", "sid", "jti")


class ClaimsError(ValueError):
    """A claim is missing or malformed. The message names it and never echoes its value."""


@dataclass(frozen=True, slots=True)
class AgentClaims:
    """The verified claim set of one agent token, in the shapes the plugin uses."""

    issuer: str
    subject: str
    audiences: tuple[str, ...]
    client_id: str
    scopes: tuple[str, ...]
    actors: tuple[str, ...]
    """The `act` chain flattened: the outermost (current actor) first, the first agent last."""
    roles: tuple[str, ...]
    session: str
    jti: str
    issued_at: int
    expires_at: int
    not_before: int | None

    @property
    def depth(self) -> int:
        return len(self.actors)


def parse_actors(act: object) -> tuple[str, ...]:
    """Flatten a nested `act` claim, outermost (the current actor) first."""
    actors: list[str] = []
    node = act
    while node is not None:
        if not isinstance(node, Mapping):
            raise ClaimsError("act must nest JSON objects")
        sub = node.get("sub")
        if not isinstance(sub, str) or not sub:
            raise ClaimsError("every act level needs a non-empty string sub")
        if len(actors) >= MAX_ACT_DEPTH:
            raise ClaimsError("act nests too deeply")
        actors.append(sub)
        node = node.get("act")
    if not actors:
        raise ClaimsError("act is empty")
    return tuple(actors)


def parse_scopes(scope: object) -> tuple[str, ...]:
    """Split the space-delimited `scope` claim (RFC 9068 §2.2.3), keeping first occurrences."""
    if not isinstance(scope, str):
        raise ClaimsError("scope must be a space-delimited string")
    return tuple(dict.fromkeys(s for s in scope.split(" ") if s))


MAX_NUMERIC_DATE = 2**53
"""The broker's bound too: JSON allows NaN, Infinity and huge integers, none of them a time."""


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims[name]
    # the range test also refuses NaN and infinities (which would not convert to int)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 <= value < MAX_NUMERIC_DATE
    ):
        raise ClaimsError(f"{name} must be a NumericDate")
    return int(value)


def _audiences(aud: object) -> tuple[str, ...]:
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return tuple(aud)
    raise ClaimsError("aud must be a string or a non-empty list of strings")


def _roles(claims: Mapping[str, Any]) -> tuple[str, ...]:
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ClaimsError("roles must be a list of strings")
    return tuple(dict.fromkeys(r for r in roles if r))


def parse_claims(claims: Mapping[str, Any]) -> AgentClaims:
    """Check presence and shape of every claim the plugin relies on; ClaimsError if not."""
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise ClaimsError(f"missing claims: {', '.join(missing)}")
    for name in _NON_EMPTY_STRINGS:
        if not isinstance(claims[name], str) or not claims[name]:
            raise ClaimsError(f"{name} must be a non-empty string")
    actors = parse_actors(claims["act"])
    if actors[0] != claims["client_id"]:
        raise ClaimsError("the outermost act.sub must be the client_id")
    return AgentClaims(
        issuer=claims["iss"],
        subject=claims["sub"],
        audiences=_audiences(claims["aud"]),
        client_id=claims["client_id"],
        scopes=parse_scopes(claims["scope"]),
        actors=actors,
        roles=_roles(claims),
        session=claims["sid"],
        jti=claims["jti"],
        issued_at=_int_claim(claims, "iat"),
        expires_at=_int_claim(claims, "exp"),
        not_before=_int_claim(claims, "nbf") if "nbf" in claims else None,
    )
