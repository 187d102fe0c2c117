"""BrokerTokenVerifier: accept only agent tokens of one broker, for this resource (RFC 9068).

A FastMCP `TokenVerifier`: `verify_token` returns an `AccessToken` or `None`, never raises,
and never logs the token. Checks, in order: compact JWS of sane size; header `typ` at+jwt
(RFC 9068 §4, `application/` prefix allowed); no `crit` and no header-carried key material
(`jku`, `x5u`, `jwk`, `x5c`); `alg` EdDSA or ES256 and equal to the key's; signature with the
broker's key for `kid`; every contract claim present and well-formed; `iss` is the broker;
`aud` is exactly this resource; `exp`/`nbf`/`iat` against the injected clock with at most
30 s leeway; not revoked in the local revocation view (consulted on every request).

Tokens of any other issuer are refused: this server never passes tokens through.

Verified tokens are remembered (`cache_size`, keyed by the exact token string): an agent sends
the same token with every request of a session, and re-checking the signature and re-parsing
the claims of bytes already verified is pure cost (issue 6's profile: about 150 → 10 µs a request).
What can change between two requests is still checked every time: `exp`, `nbf` and `iat`
against the clock, the revocation view, and that the broker still publishes the very key that
verified it (a key rotated out of the JWKS drops its tokens). Refused tokens are never
remembered, so garbage cannot fill the cache, and tokens past their `exp` leave it as new ones
come in. Each request gets its own claims, decoded again from the token's payload (cheaper
than a deep copy): nothing a request's middleware does to them reaches another request.

`AccessToken.expires_at` is the token's own `exp`. FastMCP's bearer backend refuses a token
once that moment has passed on this server's clock, so over HTTP the leeway helps with `nbf`
and `iat` (a broker clock ahead of ours), not with `exp`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from fastmcp.server.auth import AccessToken, TokenVerifier
from jwt import PyJWK

from mcp_plugin.claims import AgentClaims, ClaimsError, parse_claims
from mcp_plugin.jwks import ALGORITHMS, BrokerKeys
from mcp_plugin.revocation import (
    ManagedRevocationView,
    RevocationUnavailable,
    RevocationView,
    TokenFacts,
)

logger = logging.getLogger("mcp_plugin.verifier")

MAX_LEEWAY_SECONDS = 30
MAX_TOKEN_BYTES = 8192
DEFAULT_CACHE_SIZE = 4096
"""Verified tokens remembered; at most ~4 MB (a token is under 1 kB), oldest dropped first."""
FORBIDDEN_HEADERS = ("crit", "jku", "x5u", "jwk", "x5c")

_SIGNATURE_ONLY: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "require": [],
}


class TokenRejected(Exception):
    """Why a token was refused: for the server log only, never for the client."""

    def __init__(self, reason: str, *, level: int = logging.INFO) -> None:
        super().__init__(reason)
        self.reason = reason
        self.level = level


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token whose signature, issuer, audience and claim shapes passed once."""

    kid: str
    key: PyJWK
    parsed: AgentClaims


def is_access_token_type(typ: object) -> bool:
    """RFC 9068 §4: `at+jwt`, media-type rules: case-insensitive, `application/` optional."""
    if not isinstance(typ, str):
        return False
    value = typ.lower()
    return value.removeprefix("application/") == "at+jwt"


class BrokerTokenVerifier(TokenVerifier):
    """Verify agent tokens minted by `broker` for `resource`."""

    def __init__(
        self,
        *,
        broker: str,
        resource: str,
        revocations: RevocationView | None = None,
        keys: BrokerKeys | None = None,
        http_client: httpx.AsyncClient | None = None,
        leeway: int = MAX_LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
        required_scopes: list[str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")
        if cache_size < 0:
            raise ValueError("cache_size must be 0 (no cache) or more")
        super().__init__(required_scopes=required_scopes)
        self.issuer = broker
        self.resource = resource
        self.revocations = revocations
        self.keys = keys or BrokerKeys(broker, http_client=http_client)
        self.leeway = leeway
        self._clock = clock
        self._view_started = not isinstance(revocations, ManagedRevocationView)
        self._cache_size = cache_size
        self._verified: dict[str, _Verified] = {}  # insertion order: oldest first

    async def verify_token(self, token: str) -> AccessToken | None:
        """A Bearer token (RFC 6750): a DPoP-bound one (`cnf`) is refused here, since nothing
        checks its proof on this path; `BrokerAuthentication` uses `verify_bound_or_bearer`."""
        verified = await self.verify_bound_or_bearer(token)
        if verified is not None and "cnf" in (verified.claims or {}):
            logger.info("agent token rejected: DPoP-bound, presented without a proof check")
            return None
        return verified

    async def verify_bound_or_bearer(self, token: str) -> AccessToken | None:
        """Every check but the DPoP proof, which the caller must make when `claims["cnf"]`."""
        try:
            claims, parsed = await self._verify(token)
        except TokenRejected as exc:
            logger.log(exc.level, "agent token rejected: %s", exc.reason)
            return None
        except Exception as exc:  # noqa: BLE001 - a verifier never raises: refuse and say why
            logger.warning("agent token rejected: verifier error %s", type(exc).__name__)
            return None
        return AccessToken(
            token=token,
            client_id=parsed.client_id,
            scopes=list(parsed.scopes),
            expires_at=parsed.expires_at,
            resource=self.resource,
            subject=parsed.subject,
            claims=claims,
        )

    async def _verify(self, token: str) -> tuple[dict[str, Any], AgentClaims]:
        verified = await self._remembered(token)
        if verified is None:
            verified = await self._verify_signature(token)
            self._check_claims(verified.parsed)
            self._remember(token, verified)
        else:
            try:
                self._check_claims(verified.parsed)
            except TokenRejected:
                self._verified.pop(token, None)  # expired: it will not come back
                raise
        await self._start_view()
        self._check_revocation(verified.parsed)
        return _payload(token), verified.parsed

    async def _remembered(self, token: str) -> _Verified | None:
        """The cached verification, if the key that made it is still the broker's."""
        verified = self._verified.get(token)
        if verified is None:
            return None
        if await self.keys.get(verified.kid) is not verified.key:
            del self._verified[token]  # the key set changed since: verify again
            return None
        return verified

    def _remember(self, token: str, verified: _Verified) -> None:
        if self._cache_size == 0:
            return
        # oldest first: drop tokens past their exp (they cannot come back), then the oldest
        # beyond the bound, so memory follows the tokens in use, not every token ever seen
        expired_before = self._clock() - self.leeway
        while self._verified and (
            len(self._verified) >= self._cache_size
            or next(iter(self._verified.values())).parsed.expires_at < expired_before
        ):
            del self._verified[next(iter(self._verified))]
        self._verified[token] = verified

    async def _verify_signature(self, token: str) -> _Verified:
        header = self._read_header(token)
        alg, kid = header["alg"], header["kid"]
        key = await self.keys.get(kid)
        if key is None:
            raise TokenRejected(f"unknown kid {kid!r}")
        if key.algorithm_name != alg:
            raise TokenRejected(f"alg {alg} does not match key {kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], options=_SIGNATURE_ONLY
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected(f"bad signature (kid {kid!r})") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"undecodable token: {type(exc).__name__}") from None
        try:
            parsed = parse_claims(claims)
        except ClaimsError as exc:
            raise TokenRejected(f"bad claims: {exc}") from None
        return _Verified(kid, key, parsed)

    async def _start_view(self) -> None:
        if self._view_started or not isinstance(self.revocations, ManagedRevocationView):
            return
        try:
            await self.revocations.start()
        except Exception as exc:  # noqa: BLE001 - no view, no tokens: refuse and retry later
            raise TokenRejected(
                f"revocation view failed to start ({type(exc).__name__}); refusing",
                level=logging.WARNING,
            ) from None
        self._view_started = True

    def _read_header(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES or not token.isascii() or token.count(".") != 2:
            raise TokenRejected("not a compact JWS of acceptable size", level=logging.DEBUG)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("unreadable JOSE header", level=logging.DEBUG) from None
        if not is_access_token_type(header.get("typ")):
            raise TokenRejected("header typ is not at+jwt")
        present = [name for name in FORBIDDEN_HEADERS if name in header]
        if present:
            raise TokenRejected(f"forbidden header parameter(s): {', '.join(present)}")
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected("alg is not EdDSA or ES256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("header has no kid")
        return header

    def _check_claims(self, claims: AgentClaims) -> None:
        who = f"(jti {claims.jti}, client {claims.client_id})"
        if claims.issuer != self.issuer:
            raise TokenRejected(f"issuer is not this server's broker {who}")
        if claims.audiences != (self.resource,):
            raise TokenRejected(f"audience is not exactly {self.resource} {who}")
        now = self._clock()
        if now > claims.expires_at + self.leeway:
            raise TokenRejected(f"expired {who}")
        if claims.not_before is not None and now + self.leeway < claims.not_before:
            raise TokenRejected(f"not valid yet (nbf) {who}")
        if now + self.leeway < claims.issued_at:
            raise TokenRejected(f"issued in the future (iat) {who}")

    def _check_revocation(self, claims: AgentClaims) -> None:
        if self.revocations is None:
            return
        facts = TokenFacts(
            jti=claims.jti,
            session=claims.session,
            subject=claims.subject,
            client_id=claims.client_id,
            actors=claims.actors,
            issued_at=claims.issued_at,
        )
        try:
            revoked = self.revocations.is_revoked(facts)
        except RevocationUnavailable as exc:
            raise TokenRejected(
                f"revocation state unavailable ({exc}); refusing", level=logging.WARNING
            ) from None
        if revoked:
            raise TokenRejected(f"revoked (jti {claims.jti}, session {claims.session})")


def _payload(token: str) -> dict[str, Any]:
    """A fresh dict of a verified token's claims: its own payload, decoded again. Cheaper
    than a deep copy of a kept claims dict, and nothing to keep but the token we key on."""
    segment = token.split(".")[1]
    padded = segment + "=" * (-len(segment) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims
