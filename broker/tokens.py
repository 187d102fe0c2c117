"""Mint and verify this broker's agent tokens (RFC 9068 `at+jwt`, EdDSA or ES256).

Verification here serves re-delegation and introspection; MCP servers verify with
mcp_plugin. Every failure raises `broker.jws.TokenRejected`, whose message is for logs only:
callers turn it into one opaque client error, as Fernet does. Shape and time checks are the
shared ones in `broker.jws`, against the `now` argument, so tests pin the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from broker.claims import AgentToken, parse_agent_claims
from broker.jws import TokenRejected, check_time_claims, read_unverified
from broker.keys import Keyring

TOKEN_TYPE = "at+jwt"
MAX_TOKEN_BYTES = 8192
MAX_SUBJECT_BYTES = 16 * 1024
ALGORITHMS = ("EdDSA", "ES256")
_ACCEPTED_TYP = ("at+jwt", "application/at+jwt")


def mint(claims: Mapping[str, Any], ring: Keyring, now: float) -> str:
    key = ring.signing_key(now)
    return jwt.encode(
        dict(claims), key.private_key, algorithm=key.alg,
        headers={"typ": TOKEN_TYPE, "kid": key.kid},
    )


def peek_issuer(token: str) -> str | None:
    """The unverified `iss`, only to route a subject token to the right validator."""
    try:
        _, claims = read_unverified(token, max_length=MAX_SUBJECT_BYTES)
    except TokenRejected:
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
    header, _ = read_unverified(token, max_length=MAX_TOKEN_BYTES)
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
    check_time_claims(claims, now=now, leeway=leeway)
    if audience is not None and token_claims.audience != audience:
        raise TokenRejected("wrong audience")
    return token_claims
