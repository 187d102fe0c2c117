"""JWK Set cache for verifying JWS signatures (RFC 7517, RFC 7518, RFC 8037, RFC 8725).

Shared by upstream issuers (subject tokens) and `private_key_jwt` agents (client assertions).
Keys are parsed once per fetch into public-key objects; `key_for` picks the single key a JWS
header may use. Only asymmetric algorithms are accepted, each matched to its key type and
curve, so `none`, HS* and alg/key confusion never reach a signature check. `jku`, `x5u`, `jwk`
and `x5c` headers are never used to find keys (RFC 8725 §3.10): the key set comes from config
(and `broker.jws.read_unverified`, which every token passes first, refuses such tokens).

Refresh policy: a set older than `max_age_seconds` is refetched on next use (not in the
background, so a key the IdP withdrew stops working as soon as we notice, and tests stay
deterministic). Every fetch attempt, successful or not, is spaced by at least
`min_refresh_interval_seconds`, so garbage `kid`s or a down IdP cannot make us hammer it.
After a failed fetch the previous set keeps serving until `max_staleness_seconds`.

The compact-JWS checks every token shares live in `broker.jws`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from broker.jws import TokenRejected

log = logging.getLogger(__name__)

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
OKP_ALGORITHM_BY_CURVE = {"Ed25519": "EdDSA"}
SUPPORTED_ALGORITHMS = RSA_ALGORITHMS.union(
    EC_ALGORITHM_BY_CURVE.values(), OKP_ALGORITHM_BY_CURVE.values()
)
MIN_RSA_KEY_BITS = 2048
MAX_JWKS_BYTES = 512 * 1024
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

JwksFetch = Callable[[], Awaitable[Mapping[str, Any]]]


class JwksError(Exception):
    """Base class; the message is a fixed reason, never a token or key value."""


class KeyNotFound(TokenRejected):
    """The JWS header names no key, or no algorithm, that this key set accepts."""


class JwksUnavailable(JwksError):
    """The key set, or the metadata naming it, could not be fetched or read (a dependency)."""

    def __init__(self, reason: str, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class _VerificationKey:
    algorithms: frozenset[str]
    key: Any
    """A cryptography public-key object, ready for `jwt.decode`."""


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: tuple[_VerificationKey, ...]
    by_kid: Mapping[str, tuple[_VerificationKey, ...]]


def _algorithms_for(jwk: Mapping[str, Any]) -> frozenset[str]:
    """Algorithms a JWK may verify: fixed by key type and curve, narrowed by its own `alg`."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        by_type = RSA_ALGORITHMS
    elif kty == "EC" and crv in EC_ALGORITHM_BY_CURVE:
        by_type = frozenset({EC_ALGORITHM_BY_CURVE[crv]})
    elif kty == "OKP" and crv in OKP_ALGORITHM_BY_CURVE:
        by_type = frozenset({OKP_ALGORITHM_BY_CURVE[crv]})
    else:
        return frozenset()
    alg = jwk.get("alg")
    if alg is None:
        return by_type
    return by_type & {alg} if isinstance(alg, str) else frozenset()


def _parse_key(jwk: Any, index: int) -> tuple[str | None, _VerificationKey] | None:
    """Parse one JWK for signature verification, or log why it is skipped and return None."""
    if not isinstance(jwk, dict):
        log.warning("JWKS key #%d skipped: not an object", index)
        return None
    kid = jwk.get("kid")
    label = kid if isinstance(kid, str) else f"#{index}"
    ops = jwk.get("key_ops")
    if jwk.get("use", "sig") != "sig" or (ops is not None and "verify" not in ops):
        return None  # an encryption key, not ours to use
    if not isinstance(kid, str | None):
        log.warning("JWKS key %s skipped: kid is not a string", label)
        return None
    if _PRIVATE_MEMBERS & jwk.keys():
        log.warning("JWKS key %r skipped: it contains private key material", label)
        return None
    algorithms = _algorithms_for(jwk)
    if not algorithms:
        log.warning("JWKS key %r skipped: unsupported key type, or alg conflicts with it", label)
        return None
    try:
        public_key = PyJWK(jwk, algorithm=min(algorithms)).key
    except (PyJWTError, ValueError, TypeError, KeyError):
        log.warning("JWKS key %r skipped: malformed", label)
        return None
    if jwk["kty"] == "RSA" and public_key.key_size < MIN_RSA_KEY_BITS:
        log.warning("JWKS key %r skipped: RSA key shorter than %d bits", label, MIN_RSA_KEY_BITS)
        return None
    return kid, _VerificationKey(algorithms, public_key)


def parse_jwks(jwks: Mapping[str, Any]) -> _KeySet:
    """Parse every usable signing key of a JWK Set once; raise JwksUnavailable if not a set."""
    raw_keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(raw_keys, list):
        raise JwksUnavailable("not a JWK set")
    keys: list[_VerificationKey] = []
    by_kid: dict[str, tuple[_VerificationKey, ...]] = {}
    for index, raw in enumerate(raw_keys):
        parsed = _parse_key(raw, index)
        if parsed is None:
            continue
        kid, key = parsed
        keys.append(key)
        if kid is not None:
            by_kid[kid] = (*by_kid.get(kid, ()), key)
    if raw_keys and not keys:
        log.warning("JWKS has no usable signing key")
    return _KeySet(tuple(keys), by_kid)


async def fetch_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """GET a JSON object, bounded in size; any failure is JwksUnavailable (with the status)."""
    body = bytearray()
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != httpx.codes.OK:
                raise JwksUnavailable("unexpected HTTP status", response.status_code)
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable("response too large")
    except httpx.HTTPError as exc:
        raise JwksUnavailable(f"HTTP error ({type(exc).__name__})") from None
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("response is not JSON") from None
    if not isinstance(document, dict):
        raise JwksUnavailable("response is not a JSON object")
    return document


class JwksCache:
    """One JWK Set: fetched lazily, parsed once per fetch, refreshed under a rate limit."""

    def __init__(
        self,
        fetch: JwksFetch,
        *,
        algorithms: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        max_age_seconds: float = 300.0,
        min_refresh_interval_seconds: float = 10.0,
        max_staleness_seconds: float = 3600.0,
        fetch_timeout_seconds: float = 5.0,
        label: str = "JWKS",
    ) -> None:
        allowed = SUPPORTED_ALGORITHMS if algorithms is None else frozenset(algorithms)
        if not allowed or not allowed <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"algorithms must be a subset of {sorted(SUPPORTED_ALGORITHMS)}")
        self._fetch = fetch
        self._allowed = allowed
        self._clock = clock
        self._max_age = max_age_seconds
        self._min_interval = min_refresh_interval_seconds
        self._max_staleness = max_staleness_seconds
        self._fetch_timeout = fetch_timeout_seconds
        self._label = label
        self._keyset: _KeySet | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._inflight: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, http: httpx.AsyncClient, url: str, **options: Any) -> JwksCache:
        async def fetch() -> dict[str, Any]:
            return await fetch_json(http, url)

        return cls(fetch, label=url, **options)

    @classmethod
    def from_static(
        cls, jwks: Mapping[str, Any], *, algorithms: Iterable[str] | None = None
    ) -> JwksCache:
        """An inline key set: parsed now, never refetched, never stale."""
        keyset = parse_jwks(jwks)

        async def never_called() -> Mapping[str, Any]:
            return jwks

        cache = cls(
            never_called, algorithms=algorithms, max_age_seconds=math.inf,
            min_refresh_interval_seconds=math.inf, max_staleness_seconds=math.inf,
            label="inline JWKS",
        )
        cache._keyset, cache._fetched_at, cache._attempted_at = keyset, 0.0, 0.0
        return cache

    async def key_for(self, header: Mapping[str, Any]) -> tuple[Any, str]:
        """Return (public key, algorithm) for a JWS header, or raise KeyNotFound/JwksUnavailable."""
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise KeyNotFound("algorithm not allowed")
        if "crit" in header:
            raise KeyNotFound("crit header present")
        kid = header.get("kid")
        if not isinstance(kid, str | None):
            raise KeyNotFound("kid is not a string")
        keyset = await self._usable_keyset()
        candidates = self._candidates(keyset, kid, alg)
        if not candidates and await self._refresh():
            candidates = self._candidates(await self._usable_keyset(), kid, alg)
        if len(candidates) != 1:
            raise KeyNotFound("more than one key fits" if candidates else "no key fits")
        return candidates[0].key, alg

    @staticmethod
    def _candidates(keyset: _KeySet, kid: str | None, alg: str) -> list[_VerificationKey]:
        pool = keyset.keys if kid is None else keyset.by_kid.get(kid, ())
        return [key for key in pool if alg in key.algorithms]

    async def _usable_keyset(self) -> _KeySet:
        if self._keyset is None or self._clock() - self._fetched_at >= self._max_age:
            await self._refresh()
        if self._keyset is None or self._clock() - self._fetched_at > self._max_staleness:
            raise JwksUnavailable("no current key set")
        return self._keyset

    async def _refresh(self) -> bool:
        """Join the fetch in flight or start one, unless one started less than the interval ago.

        Concurrent callers share a single fetch. Returns whether a fetch was awaited.
        """
        if self._inflight is None:
            if self._clock() - self._attempted_at < self._min_interval:
                return False
            self._attempted_at = self._clock()
            self._inflight = asyncio.create_task(self._fetch_and_install())
            self._inflight.add_done_callback(self._forget_inflight)
        # shield: a caller that gives up must not cancel the fetch the others wait for
        await asyncio.shield(self._inflight)
        return True

    def _forget_inflight(self, _task: asyncio.Task[None]) -> None:
        self._inflight = None

    async def _fetch_and_install(self) -> None:
        try:
            async with asyncio.timeout(self._fetch_timeout):
                document = await self._fetch()
            keyset = parse_jwks(document)
        except (JwksUnavailable, TimeoutError, httpx.HTTPError, OSError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, JwksUnavailable) else type(exc).__name__
            if self._keyset is None:
                log.warning("%s: fetch failed (%s); no keys cached", self._label, reason)
            else:
                age = self._clock() - self._fetched_at
                log.warning("%s: fetch failed (%s); keeping keys %.0fs old",
                            self._label, reason, age)
            return
        self._keyset, self._fetched_at = keyset, self._clock()
