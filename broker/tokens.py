"""Mint and verify this broker's agent tokens (RFC 9068 `at+jwt`, EdDSA or ES256).

Verification here serves re-delegation and introspection; MCP servers verify with
mcp_plugin. Every failure raises `TokenRejected` whose `reason` is for logs only: callers
turn it into one opaque client error, as Fernet does. Time is checked against the `now`
argument (PyJWT's own time checks are off), so tests pin the clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from broker.claims import AgentToken, parse_agent_claims
from broker.keys import Keyring

TOKEN_TYPE = "at+jwt"
MAX_TOKEN_BYTES = 8192
ALGORITHMS = ("EdDSA", "ES256")
_ACCEPTED_TYP = ("at+jwt", "application/at+jwt")


class TokenRejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def mint(claims: Mapping[str, Any], ring: Keyring, now: float) -> str:
    key = ring.signing_key(now)
    return jwt.encode(
        dict(claims), key.private_key, algorithm=key.alg,
        headers={"typ": TOKEN_TYPE, "kid": key.kid},
    )


def read_header(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise TokenRejected("oversized or non-ASCII token")
    if token.count(".") != 2:
        raise TokenRejected("not a compact JWS")
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("unreadable header") from None


def peek_issuer(token: str) -> str | None:
    """The unverified `iss`, only to route a subject token to the right validator."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


def verify(
    token: str,
    ring: Keyring,
    *,
    issuer: str,
    now: float,
    leeway: int,
    audience: str | None = None,
) -> AgentToken:
    header = read_header(token)
    if str(header.get("typ", "")).lower() not in _ACCEPTED_TYP:
        raise TokenRejected("wrong typ")
    if "crit" in header:
        raise TokenRejected("crit header")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS or not isinstance(kid, str):
        raise TokenRejected("algorithm or kid not acceptable")
    key = ring.verification_key(kid, now)
    if key is None or key.alg != alg:
        raise TokenRejected("unknown kid")
    try:
        claims = jwt.decode(
            token, key.public_key, algorithms=[key.alg], issuer=issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "require": ["iss", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenRejected(f"signature or claims invalid ({type(exc).__name__})") from None
    try:
        token_claims = parse_agent_claims(claims)
    except ValueError as exc:
        raise TokenRejected(f"malformed claims: {exc}") from None
    if token_claims.expires_at + leeway <= now:
        raise TokenRejected("expired")
    nbf = claims.get("nbf", token_claims.issued_at)
    if not isinstance(nbf, int) or nbf - leeway > now or token_claims.issued_at - leeway > now:
        raise TokenRejected("not yet valid")
    if audience is not None and token_claims.audience != audience:
        raise TokenRejected("wrong audience")
    return token_claims
