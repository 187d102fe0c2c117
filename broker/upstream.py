"""Subject tokens of upstream OIDC issuers: discovery, JWKS, JWT validation.

Implements `broker.ports.SubjectTokenValidator` for ID tokens and JWT access tokens (RFC 7519,
RFC 9068) following the JWT BCP (RFC 8725). The unverified `iss` only chooses which configured
issuer's keys to try; everything else is decided after the signature check. Keys come from
`jwks_uri` in config or from OpenID Connect Discovery 1.0 §4 (falling back to RFC 8414 §3),
discovered once per issuer. Time claims are checked against the injected clock.

Every token problem is the same `InvalidGrant` (one opaque error, the reason only in a DEBUG
log); an issuer whose metadata or keys cannot be fetched is `DependencyUnavailable`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import httpx
from jwt import PyJWT
from jwt.exceptions import PyJWTError

from broker.config import MAX_LEEWAY_SECONDS, UpstreamIssuer
from broker.errors import DependencyUnavailable, InvalidGrant
from broker.jwks import (
    JwksCache,
    JwksUnavailable,
    fetch_json,
)
from broker.jws import TokenRejected, check_time_claims, read_unverified
from broker.ports import Clock, SubjectIdentity

log = logging.getLogger(__name__)

SUBJECT_TOKEN_MAX_LENGTH = 16 * 1024
ACCEPTED_TYPS = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_REJECTED = "The subject token is invalid, expired or not trusted."

# Built once: signature, aud, iss and required claims; time claims use our clock instead.
_DECODER = PyJWT({
    "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "require": ["exp", "iat", "iss", "sub", "aud"],
})


def _strip_one_slash(url: str) -> str:
    return url[:-1] if url.endswith("/") else url


def _metadata_urls(issuer: str) -> tuple[str, str]:
    """OIDC discovery appends to the issuer; RFC 8414 inserts before the issuer's path."""
    parts = urlsplit(issuer)
    oidc = f"{issuer}/.well-known/openid-configuration"
    rfc8414 = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}"
    return oidc, rfc8414


async def discover_jwks_uri(http: httpx.AsyncClient, issuer: str) -> str:
    """Read the issuer's metadata; require its `issuer` to be ours and return its `jwks_uri`."""
    oidc_url, rfc8414_url = _metadata_urls(issuer)
    try:
        metadata = await fetch_json(http, oidc_url)
    except JwksUnavailable as exc:
        if exc.status_code != httpx.codes.NOT_FOUND:
            raise
        metadata = await fetch_json(http, rfc8414_url)
    stated = metadata.get("issuer")
    if not isinstance(stated, str) or _strip_one_slash(stated) != issuer:
        raise JwksUnavailable("discovery: metadata names another issuer")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme not in ("http", "https"):
        raise JwksUnavailable("discovery: no usable jwks_uri")
    return jwks_uri


class _DiscoveredJwks:
    """The JWKS fetch of an issuer without a configured `jwks_uri`.

    Discovery runs inside the JwksCache's single in-flight fetch, so concurrent first callers
    share one discovery; once it succeeds the `jwks_uri` is kept for the process lifetime.
    """

    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self._http = http
        self._issuer = issuer
        self._jwks_uri: str | None = None

    async def __call__(self) -> dict[str, Any]:
        if self._jwks_uri is None:
            self._jwks_uri = await discover_jwks_uri(self._http, self._issuer)
        return await fetch_json(self._http, self._jwks_uri)


@dataclass(frozen=True, slots=True)
class _TrustedIssuer:
    issuer: str
    """As configured; becomes `SubjectIdentity.issuer`."""
    accepted_iss: frozenset[str]
    audiences: tuple[str, ...]
    roles_claim: str
    keys: JwksCache


class UpstreamValidator:
    """Validates subject tokens against the configured upstream issuers."""

    def __init__(
        self,
        issuers: Sequence[UpstreamIssuer],
        http: httpx.AsyncClient,
        *,
        clock: Clock = time.time,
        leeway_seconds: int = 30,
    ) -> None:
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}")
        self._clock = clock
        self._leeway = leeway_seconds
        self._issuers: dict[str, _TrustedIssuer] = {}
        for config in issuers:
            normalized = _strip_one_slash(config.issuer)
            if normalized in self._issuers:
                raise ValueError("upstream issuers differ only by a trailing slash")
            keys = (
                JwksCache.from_url(http, config.jwks_uri, algorithms=config.algorithms,
                                   clock=clock)
                if config.jwks_uri
                else JwksCache(_DiscoveredJwks(http, normalized), algorithms=config.algorithms,
                               clock=clock, label=f"JWKS of {normalized}")
            )
            self._issuers[normalized] = _TrustedIssuer(
                issuer=config.issuer,
                accepted_iss=frozenset({normalized, normalized + "/"}),
                audiences=tuple(config.audiences),
                roles_claim=config.roles_claim,
                keys=keys,
            )

    async def validate_subject_token(self, token: str) -> SubjectIdentity:
        try:
            return await self._validate(token)
        except TokenRejected as rejected:
            log.debug("subject token rejected: %s", rejected)
            raise InvalidGrant(_REJECTED) from None
        except JwksUnavailable as unavailable:
            # the JwksCache already warned when its fetch failed; this is per request
            log.debug("subject token not verifiable now: %s", unavailable)
            raise DependencyUnavailable("upstream issuer keys unavailable") from None

    async def _validate(self, token: str) -> SubjectIdentity:
        header, unverified = read_unverified(token, max_length=SUBJECT_TOKEN_MAX_LENGTH)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPS):
            raise TokenRejected("typ not accepted")
        iss = unverified.get("iss")
        trusted = self._issuers.get(_strip_one_slash(iss)) if isinstance(iss, str) else None
        if trusted is None:
            raise TokenRejected("unknown issuer")
        key, algorithm = await trusted.keys.key_for(header)
        try:
            claims = _DECODER.decode(
                token, key, algorithms=[algorithm], audience=trusted.audiences,
                issuer=trusted.accepted_iss,
            )
        except PyJWTError as exc:
            raise TokenRejected(type(exc).__name__) from None
        expires_at = check_time_claims(claims, now=self._clock(), leeway=self._leeway)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("sub is not a non-empty string")
        return SubjectIdentity(
            issuer=trusted.issuer,
            subject=subject,
            roles=roles_from_claims(claims, trusted.roles_claim),
            expires_at=expires_at,
            claims=MappingProxyType(claims),
            issued_at=int(claims["iat"]),
        )


def roles_from_claims(claims: Mapping[str, Any], roles_claim: str) -> tuple[str, ...]:
    """Roles at `roles_claim`: a top-level claim of that exact name, else a dotted path.

    The exact name comes first because namespaced claims (`https://example.com/roles`,
    as Auth0 requires) contain dots. A string is one role; a list of strings, several;
    anything else, none.
    """
    value: Any = claims.get(roles_claim)
    if value is None and "." in roles_claim:
        value = claims
        for part in roles_claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(role, str) for role in value):
        return tuple(value)
    return ()
