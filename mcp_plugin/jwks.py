"""The broker's signing keys: RFC 8414 metadata discovery, then a cached JWKS (RFC 7517).

Keys are parsed into `PyJWK` objects once per fetch, never per request. The set is
refreshed when older than `max_age`, and on an unknown `kid` at most once per
`refetch_interval` seconds, so a flood of tokens with made-up kids cannot turn into a flood
of requests to the broker; requests arriving while a fetch is in flight wait for it. If a
refresh fails, the keys already held stay in use (tokens are short-lived) and a warning says
so. Only EdDSA and ES256 keys are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

logger = logging.getLogger("mcp_plugin.jwks")

ALGORITHMS = ("EdDSA", "ES256")
METADATA_PATH = "/.well-known/oauth-authorization-server"


class KeySetError(Exception):
    """The broker's metadata or key set could not be fetched or made sense of."""


def metadata_url(broker: str) -> str:
    """RFC 8414 §3: the well-known URI is inserted between the host and any issuer path."""
    parsed = httpx.URL(broker)
    path = parsed.path.rstrip("/")
    return str(parsed.copy_with(path=f"{METADATA_PATH}{path}"))


def parse_jwks(document: object, algorithms: tuple[str, ...] = ALGORITHMS) -> dict[str, PyJWK]:
    """kid -> key for every usable signing key; others are skipped with a debug line."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeySetError("JWKS document has no 'keys' list")
    keys: dict[str, PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            logger.debug("skipping JWKS entry without kid or not for signatures")
            continue
        try:
            key = PyJWK(dict(jwk))
        except PyJWTError as exc:
            logger.debug("skipping JWKS key %s: %s", kid, type(exc).__name__)
            continue
        if key.algorithm_name not in algorithms or jwk.get("kty") not in ("OKP", "EC"):
            logger.debug("skipping JWKS key %s: algorithm %s", kid, key.algorithm_name)
            continue
        keys[kid] = key
    return keys


class BrokerKeys:
    """The signing keys of one broker (issuer), discovered and cached."""

    def __init__(
        self,
        broker: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        refetch_interval: float = 5.0,
        max_age: float = 300.0,
        fetch_timeout: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = broker
        self._given_client = http_client
        self._refetch_interval = refetch_interval
        self._max_age = max_age
        self._fetch_timeout = fetch_timeout
        self._monotonic = monotonic
        self._keys: dict[str, PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    async def get(self, kid: str) -> PyJWK | None:
        """The key with this kid, refreshing the set if stale or if the kid is unknown."""
        now = self._monotonic()
        stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
        key = self._keys.get(kid)
        if key is not None and not stale:
            return key
        # join a fetch in flight too: at a cold start or a key rotation, requests with the new
        # kid arrive together, and all but the first would otherwise be refused by the interval
        if self._may_attempt(now) or self._loop_lock().locked():
            await self._refresh()
        else:
            logger.debug("unknown kid %s; key set refetched less than %ss ago", kid,
                         self._refetch_interval)
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch metadata (if not yet known) and the key set now; raises KeySetError."""
        self._attempted_at = self._monotonic()
        client = self._http_client()
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover(client)
        document = await self._fetch_json(client, self._jwks_uri)
        keys = parse_jwks(document)
        if not keys:
            raise KeySetError(f"no usable EdDSA/ES256 signing key at {self._jwks_uri}")
        self._keys = keys
        self._fetched_at = self._monotonic()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _may_attempt(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._refetch_interval

    async def _refresh(self) -> None:
        async with self._loop_lock():
            if not self._may_attempt(self._monotonic()):
                return  # another request refreshed while we waited
            try:
                await self.refresh()
            except KeySetError as exc:
                self._jwks_uri = None  # discover again next time: the broker may have moved it
                held = f"keeping {len(self._keys)} cached key(s)" if self._keys else "no keys"
                logger.warning("broker key set refresh failed (%s); %s", exc, held)

    async def _discover(self, client: httpx.AsyncClient) -> str:
        url = metadata_url(self.issuer)
        metadata = await self._fetch_json(client, url)
        if not isinstance(metadata, Mapping):
            raise KeySetError(f"authorization server metadata at {url} is not a JSON object")
        if metadata.get("issuer") != self.issuer:
            raise KeySetError(f"metadata at {url} names another issuer (RFC 8414 §3.3)")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise KeySetError(f"metadata at {url} has no usable jwks_uri")
        return jwks_uri

    async def _fetch_json(self, client: httpx.AsyncClient, url: str) -> Any:
        try:
            response = await client.get(url, timeout=self._fetch_timeout)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise KeySetError(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    def _loop_lock(self) -> asyncio.Lock:
        self._bind_loop()
        assert self._lock is not None
        return self._lock

    def _http_client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        self._bind_loop()
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    def _bind_loop(self) -> None:
        """Locks and connection pools belong to one event loop: start afresh on another."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._client = None  # the old pool belongs to a loop that is gone or elsewhere
