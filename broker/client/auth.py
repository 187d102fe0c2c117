"""`TokenExchangeAuth`: an httpx Auth that sends a broker-minted agent token with each request.

It exchanges the user's (or a parent agent's) token at the broker, caches the agent token,
exchanges again shortly before expiry, and once when the resource answers 401 (a revoked
session, a rotated key), then resends the request once. With `dpop`, tokens are bound to a key
(RFC 9449): each token request and each resource request carries a fresh proof by it, and the
token goes as `Authorization: DPoP <token>`; a server's `use_dpop_nonce` gets one retry.
The flow is written once, as a generator of steps (send, discover, lease a token);
`sync_auth_flow` and `async_auth_flow` only drive it, so both behave the same.

FastMCP >= 4 and the MCP SDK >= 2 send their requests with `httpx2`, which only accepts its own
`Auth` subclasses: the class derives from both, and uses nothing on requests and responses
but what the two libraries share (`headers`, `status_code`, `read`/`aread`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from broker.client.cache import DEFAULT_REFRESH_FRACTION, DEFAULT_REFRESH_SKEW, CachedToken
from broker.client.cache import refresh_at as _refresh_at
from broker.client.discovery import (
    discover_broker,
    discover_broker_sync,
    discover_token_endpoint,
    discover_token_endpoint_sync,
    parse_www_authenticate,
)
from broker.client.dpop import DPoPKey
from broker.client.exchange import (
    ID_TOKEN_TYPE,
    AssertionSource,
    AuthMethod,
    ClientCredentials,
    ExchangedToken,
    _discard,
    exchange_token,
    exchange_token_sync,
)

try:
    from httpx2 import Auth as _Httpx2Auth
except ImportError:  # pragma: no cover - only without the MCP SDK installed
    class _Httpx2Auth:  # type: ignore[no-redef]
        """Stand-in base when httpx2 is absent: plain httpx still works."""

SubjectTokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""The subject token, or a callable returning the current one (e.g. a fresh ID token)."""


@dataclass(frozen=True, slots=True)
class _Send:
    request: Any


@dataclass(frozen=True, slots=True)
class _Discover:
    challenge: str | None  # the 401's WWW-Authenticate value


@dataclass(frozen=True, slots=True)
class _Lease:
    stale: str | None  # the token the resource just refused, if any


@dataclass(frozen=True, slots=True)
class _Granted:
    token: str
    fresh: bool  # exchanged for this very request: a 401 would not be cured by another
    dpop: bool = False  # bound to our DPoP key: sent with the DPoP scheme and a proof


_Step = _Send | _Discover | _Lease


class TokenExchangeAuth(httpx.Auth, _Httpx2Auth):
    """Authenticate requests to one resource (an MCP server) with agent tokens of a broker.

    Give either `broker` (its issuer URL; the token endpoint comes from its RFC 8414 metadata)
    or `discover=True`: then the broker is read from the resource's RFC 9728 metadata (named
    in its first 401), and must be one of `allowed_brokers` when given. Never point discovery
    at resources you do not trust without `allowed_brokers`: the broker receives the subject
    token. One exchange is in flight at a time per flavor (an asyncio lock for async clients,
    a threading lock for sync ones).
    """

    requires_request_body = True  # the retry after a 401 resends the body

    def __init__(
        self,
        *,
        subject_token: SubjectTokenSource,
        resource: str,
        client_id: str,
        client_secret: str | None = None,
        auth_method: AuthMethod | None = None,
        client_assertion: AssertionSource | None = None,
        scope: str | Sequence[str] | None = None,
        subject_token_type: str = ID_TOKEN_TYPE,
        broker: str | None = None,
        discover: bool = False,
        allowed_brokers: Sequence[str] | None = None,
        refresh_skew: float = DEFAULT_REFRESH_SKEW,
        refresh_fraction: float = DEFAULT_REFRESH_FRACTION,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        dpop: DPoPKey | bool = False,
    ) -> None:
        if (broker is None) == (not discover):
            raise ValueError("give exactly one of broker=<issuer URL> or discover=True")
        if allowed_brokers is not None and not discover:
            raise ValueError("allowed_brokers applies to discover=True only")
        self.client = ClientCredentials(client_id, client_secret, auth_method, client_assertion)
        self.resource, self.scope = resource, scope
        self.subject_token_type = subject_token_type
        self._subject = subject_token
        self._discover = discover
        self._allowed = tuple(allowed_brokers) if allowed_brokers is not None else None
        self._skew, self._fraction = refresh_skew, refresh_fraction
        self._http, self._async_http = http_client, async_http_client
        self._clock = clock
        self._issuer: str | None = broker
        self._token_endpoint: str | None = None
        self._cached: CachedToken | None = None
        self._thread_lock = threading.Lock()
        self._async_lock = asyncio.Lock()
        self.dpop_key: DPoPKey | None = (
            DPoPKey.generate() if dpop is True else dpop if isinstance(dpop, DPoPKey) else None)
        """The key tokens are bound to; a sub-agent re-delegating our tokens needs it too.
        It also keeps each server's latest DPoP-Nonce (RFC 9449 §8-9) for its next proofs."""

    @property
    def broker(self) -> str | None:
        """The broker's issuer URL: as configured, or once discovered."""
        return self._issuer

    @property
    def token_endpoint(self) -> str | None:
        return self._token_endpoint

    def get_token(self) -> str:
        """The current agent token, exchanged if needed (e.g. for a non-httpx client)."""
        return self._sync_lease(None).token

    async def aget_token(self) -> str:
        return (await self._async_lease(None)).token

    def invalidate(self) -> None:
        """Forget the cached token: the next request exchanges again."""
        self._cached = None

    # The flow, once for both drivers.

    def _flow(self, request: Any) -> Generator[_Step, Any, None]:
        if self._token_endpoint is None and self._discover:
            response = yield _Send(request)  # unauthenticated: its 401 names the metadata
            if response.status_code != 401:
                return
            yield _Discover(response.headers.get("www-authenticate"))
        granted: _Granted = yield _Lease(None)
        self._authorize(request, granted)
        response = yield _Send(request)
        if self._nonce_asked(request, response, granted):
            self._authorize(request, granted)
            response = yield _Send(request)
        if response.status_code != 401 or granted.fresh:
            return
        granted = yield _Lease(granted.token)
        self._authorize(request, granted)
        yield _Send(request)

    def _authorize(self, request: Any, granted: _Granted) -> None:
        if not granted.dpop or self.dpop_key is None:
            request.headers["Authorization"] = f"Bearer {granted.token}"
            return
        request.headers["Authorization"] = f"DPoP {granted.token}"
        request.headers["DPoP"] = self.dpop_key.proof(  # with the nonce it keeps for the URL
            request.method, str(request.url), access_token=granted.token)

    def _nonce_asked(self, request: Any, response: Any, granted: _Granted) -> bool:
        """Keep the resource's nonce with the key; True when a 401 asks for a retry with it."""
        nonce = response.headers.get("dpop-nonce")
        if not granted.dpop or not nonce or self.dpop_key is None:
            return False
        self.dpop_key.remember_nonce(str(request.url), nonce)
        challenge = parse_www_authenticate(response.headers.get("www-authenticate") or "")
        return response.status_code == 401 and (
            challenge.get("dpop", {}).get("error") == "use_dpop_nonce")

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        request.read()
        flow = self._flow(request)
        reply: Any = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if isinstance(step, _Send):
                reply = yield step.request
            elif isinstance(step, _Discover):
                self._sync_discover(step.challenge)
                reply = None
            else:
                reply = self._sync_lease(step.stale)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        await request.aread()
        flow = self._flow(request)
        reply: Any = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration:
                return
            if isinstance(step, _Send):
                reply = yield step.request
            elif isinstance(step, _Discover):
                await self._async_discover(step.challenge)
                reply = None
            else:
                reply = await self._async_lease(step.stale)

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        raise RuntimeError("driven through sync_auth_flow or async_auth_flow only")

    # Shared state, read and written under the caller's lock.

    def _cached_token(self, stale: str | None) -> _Granted | None:
        cached = self._cached
        if cached is None:
            return None
        if cached.token == stale or cached.is_due(self._clock()):
            self._cached = None  # refused or about to expire: never offered again
            return None
        return _Granted(cached.token, fresh=False, dpop=_is_dpop(cached.result))

    def _store(self, result: ExchangedToken, started: float) -> _Granted:
        when = _refresh_at(started, result.expires_in, skew=self._skew, fraction=self._fraction)
        self._cached = CachedToken(result, when)
        return _Granted(result.access_token, fresh=True, dpop=_is_dpop(result))

    # Sync side.

    def _sync_subject(self) -> str:
        if isinstance(self._subject, str):
            return self._subject
        value = self._subject()
        if inspect.isawaitable(value):
            _discard(value)
            raise TypeError("an async subject_token source needs an async client")
        return value

    def _sync_discover(self, challenge: str | None) -> None:
        with self._thread_lock:
            if self._token_endpoint is None:
                self._sync_resolve(challenge)

    def _sync_resolve(self, challenge: str | None) -> str:
        issuer = self._issuer or discover_broker_sync(
            self.resource, challenge=challenge, allowed_brokers=self._allowed, http=self._http)
        self._token_endpoint = discover_token_endpoint_sync(issuer, http=self._http)
        self._issuer = issuer
        return self._token_endpoint

    def _sync_lease(self, stale: str | None) -> _Granted:
        with self._thread_lock:
            cached = self._cached_token(stale)
            if cached is not None:
                return cached
            endpoint = self._token_endpoint or self._sync_resolve(None)
            started = self._clock()
            result = exchange_token_sync(
                endpoint, subject_token=self._sync_subject(), client=self.client,
                resource=self.resource, scope=self.scope,
                subject_token_type=self.subject_token_type, http=self._http,
                dpop=self.dpop_key)
            return self._store(result, started)

    # Async side.

    async def _async_subject(self) -> str:
        if isinstance(self._subject, str):
            return self._subject
        value = self._subject()
        return await value if inspect.isawaitable(value) else value

    async def _async_discover(self, challenge: str | None) -> None:
        async with self._async_lock:
            if self._token_endpoint is None:
                await self._async_resolve(challenge)

    async def _async_resolve(self, challenge: str | None) -> str:
        issuer = self._issuer or await discover_broker(
            self.resource, challenge=challenge, allowed_brokers=self._allowed,
            http=self._async_http)
        self._token_endpoint = await discover_token_endpoint(issuer, http=self._async_http)
        self._issuer = issuer
        return self._token_endpoint

    async def _async_lease(self, stale: str | None) -> _Granted:
        async with self._async_lock:
            cached = self._cached_token(stale)
            if cached is not None:
                return cached
            endpoint = self._token_endpoint or await self._async_resolve(None)
            started = self._clock()
            result = await exchange_token(
                endpoint, subject_token=await self._async_subject(), client=self.client,
                resource=self.resource, scope=self.scope,
                subject_token_type=self.subject_token_type, http=self._async_http,
                dpop=self.dpop_key)
            return self._store(result, started)


def _is_dpop(result: ExchangedToken) -> bool:
    return result.token_type.lower() == "dpop"
