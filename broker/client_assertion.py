"""JWT client assertions, `private_key_jwt` (RFC 7523 §2.2 and §3, OpenID Connect Core §9).

Why not authlib's `JWTBearerClientAssertion`: its entry point is synchronous and takes an
authlib request and `query_client`; its key hook (`resolve_client_public_key`) is synchronous,
so our JwksCache (a remote `jwks_uri`, refetched on an unknown `kid`) cannot be awaited there;
its jti hook is synchronous too, while our replay cache is async Redis; it checks time with
joserfc against `time.time()`, so a test cannot pin the clock; and it parses keys a second way
(joserfc) and returns joserfc's wording to the client. Borrowing only its claim check would
keep those last two problems, so we verify with PyJWT and the same JwksCache the upstream
issuers use. What we enforce:

- iss and sub are both the client_id, and equal the form's `client_id` when one was sent;
- aud contains one of our audiences (the token endpoint URL or the issuer);
- exp is required and not past (with leeway); nbf and iat, when present, not in the future;
- the lifetime, exp - iat (or exp - now without iat), is at most `max_lifetime_seconds`;
- jti is required, a non-empty string of at most 256 characters; the caller records it for
  replay (§3 item 7) until `VerifiedAssertion.expires_at`;
- the signature is by one of the client's registered keys, with an asymmetric algorithm that
  fits the key; `typ`, when present, is `JWT` (or `client-authentication+jwt`, the explicit
  type of draft-ietf-oauth-rfc7523bis); the assertion is at most 8 KiB of ASCII.

Every failure is the same `InvalidClient`; the reason goes to a DEBUG log, never the contents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jwt import PyJWT
from jwt.exceptions import PyJWTError

from broker.config import MAX_LEEWAY_SECONDS
from broker.errors import DependencyUnavailable, InvalidClient
from broker.jwks import (
    JwksCache,
    JwksUnavailable,
)
from broker.jws import TokenRejected, check_time_claims, read_unverified
from broker.ports import Clock

log = logging.getLogger(__name__)

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_MAX_LENGTH = 8 * 1024
MAX_JTI_LENGTH = 256
ACCEPTED_TYPS = frozenset({"jwt", "client-authentication+jwt"})
_REJECTED = "Client authentication failed."

# Built once: signature, aud, iss, sub and required claims; time claims use our clock instead.
_DECODER = PyJWT({
    "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "require": ["exp", "iss", "sub", "aud", "jti"],
})

KeysFor = Callable[[str], JwksCache | None]
"""The registered keys of a `private_key_jwt` client, or None for any other client id."""


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    expires_at: int
    """Until when to remember `jti`: the assertion's exp plus the leeway we granted it."""


class ClientAssertionVerifier:
    def __init__(
        self,
        audiences: Sequence[str],
        *,
        clock: Clock = time.time,
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = 300,
    ) -> None:
        if not audiences:
            raise ValueError("audiences must not be empty")
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}")
        self._audiences = tuple(audiences)
        self._clock = clock
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds

    async def verify(
        self, assertion: str, client_id_hint: str | None, keys_for: KeysFor
    ) -> VerifiedAssertion:
        """Authenticate a client by its assertion; raise InvalidClient on any problem."""
        try:
            return await self._verify(assertion, client_id_hint, keys_for)
        except TokenRejected as rejected:
            log.debug("client assertion rejected: %s", rejected)
            raise InvalidClient(_REJECTED) from None
        except JwksUnavailable as unavailable:
            log.debug("client assertion not verifiable now: %s", unavailable)
            raise DependencyUnavailable("client keys unavailable") from None

    async def _verify(
        self, assertion: str, client_id_hint: str | None, keys_for: KeysFor
    ) -> VerifiedAssertion:
        header, unverified = read_unverified(assertion, max_length=ASSERTION_MAX_LENGTH)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPS):
            raise TokenRejected("typ not accepted")
        client_id = unverified.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise TokenRejected("sub is not a non-empty string")
        if unverified.get("iss") != client_id:
            raise TokenRejected("iss differs from sub")
        if client_id_hint is not None and client_id_hint != client_id:
            raise TokenRejected("sub differs from the client_id parameter")
        keys = keys_for(client_id)
        if keys is None:
            raise TokenRejected("no private_key_jwt client with that id")
        key, algorithm = await keys.key_for(header)
        try:
            claims = _DECODER.decode(
                assertion, key, algorithms=[algorithm], audience=self._audiences,
                issuer=client_id, subject=client_id,
            )
        except PyJWTError as exc:
            raise TokenRejected(type(exc).__name__) from None
        now = self._clock()
        expires_at = check_time_claims(claims, now=now, leeway=self._leeway)
        issued_at = claims.get("iat")
        if expires_at - (now if issued_at is None else issued_at) > self._max_lifetime:
            raise TokenRejected("lifetime too long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise TokenRejected("jti is not a string of 1 to 256 characters")
        return VerifiedAssertion(client_id, jti, expires_at + self._leeway)
