"""`protect(mcp, ...)`: one call that makes a FastMCP server an agent-broker resource server.

It wires `BrokerTokenVerifier` (every request carries a valid agent token, or gets 401 with
`WWW-Authenticate: Bearer resource_metadata="..."`, FastMCP's RequireAuthMiddleware) and
`CerbosAuthorization` (every list, call, read and get is decided by Cerbos), serves RFC 9728
protected resource metadata naming the broker as the authorization server, answers a
tool call that a missing scope would unlock with a 403 step-up challenge, and keeps the
transport's `Mcp-Param-*` header check from revealing hidden tools (mcp_plugin/param_headers.py).

With `redis_url`, revocations come from the broker through a `RedisRevocationFeed`, started
and closed with the server's lifespan (a component-less FastMCP `Provider`, the public hook
for that); the verifier also starts it on first use, for apps served without a lifespan.
DPoP proofs are then spent once across replicas in the same Redis (`RedisProofReplayCache`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastmcp import FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.providers import Provider
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from pydantic import AnyHttpUrl
from starlette.middleware import Middleware as ASGIMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_plugin.authorization import CerbosAuthorization
from mcp_plugin.decision_cache import DEFAULT_TTL_SECONDS as DEFAULT_DECISION_CACHE_SECONDS
from mcp_plugin.dpop import ALGORITHMS as DPOP_ALGORITHMS
from mcp_plugin.dpop_auth import (
    DEFAULT_PROOF_WINDOW_SECONDS,
    BrokerAuthentication,
    MemoryProofReplayCache,
    ProofReplayCache,
)
from mcp_plugin.dpop_nonce import NonceIssuer
from mcp_plugin.dpop_replay import RedisProofReplayCache
from mcp_plugin.param_headers import HeaderParameterTools, ToolVisibilityCheck, guard_input_schemas
from mcp_plugin.pdp import (
    DEFAULT_MAX_RESOURCES_PER_REQUEST,
    DEFAULT_TIMEOUT_SECONDS,
    CerbosPolicyPoint,
    PolicyDecisionPoint,
)
from mcp_plugin.principal import DEFAULT_RESOURCE_KIND
from mcp_plugin.revocation import ManagedRevocationView, RevocationView, StaticRevocations
from mcp_plugin.revocation_feed import RedisRevocationFeed
from mcp_plugin.step_up import StepUpChallenge
from mcp_plugin.verifier import MAX_LEEWAY_SECONDS, BrokerTokenVerifier

logger = logging.getLogger("mcp_plugin.protect")


class BrokerAuthProvider(RemoteAuthProvider):
    """RFC 9728 metadata for exactly one resource URI, naming the broker; optional step-up.

    The metadata is served with the URIs exactly as configured: pydantic's URL type would add
    a trailing slash to the broker's issuer, and issuer identifiers compare as strings.
    Requests are authenticated by `BrokerAuthentication`: Bearer, and DPoP-bound tokens with
    their proofs (RFC 9449); with `dpop_required`, only DPoP-bound tokens are accepted; with
    `dpop_nonces`, proofs must carry a nonce it issued (RFC 9449 §9).
    """

    def __init__(
        self,
        verifier: BrokerTokenVerifier,
        *,
        scopes_supported: list[str] | None = None,
        resource_name: str | None = None,
        dpop_required: bool = False,
        dpop_proof_window: int = DEFAULT_PROOF_WINDOW_SECONDS,
        dpop_replay: ProofReplayCache | None = None,
        dpop_nonces: NonceIssuer | None = None,
    ) -> None:
        parts = urlsplit(verifier.resource)
        super().__init__(
            token_verifier=verifier,
            authorization_servers=[AnyHttpUrl(verifier.issuer)],
            base_url=f"{parts.scheme}://{parts.netloc}",
            scopes_supported=scopes_supported or [],
            resource_name=resource_name,
        )
        self.verifier = verifier
        self.metadata_url = str(build_resource_metadata_url(AnyHttpUrl(verifier.resource)))
        self._before_dispatch: _BeforeDispatch | None = None
        self.dpop_required, self.dpop_proof_window = dpop_required, dpop_proof_window
        self.dpop_replay, self.dpop_nonces = dpop_replay, dpop_nonces

    def check_before_dispatch(self, authorization: CerbosAuthorization, server: FastMCP[Any],
                              *, step_up: bool, header_tools: HeaderParameterTools | None
                              ) -> None:
        """The HTTP-level checks made before the MCP transport sees a request: the step-up
        challenge (if `step_up`) and the tool visibility behind `Mcp-Param-*` header checks
        (if the server has a schema hook to guard)."""
        self._before_dispatch = _BeforeDispatch(authorization, server, step_up, header_tools)

    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "resource": self.verifier.resource,
            "authorization_servers": [self.verifier.issuer],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
            "dpop_bound_access_tokens_required": self.dpop_required,
        }
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        if self.resource_name:
            document["resource_name"] = self.resource_name
        return document

    def _get_resource_url(self, path: str | None = None) -> AnyHttpUrl | None:
        return AnyHttpUrl(self.verifier.resource)  # the audience of our tokens, whatever the path

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        self.set_mcp_path(mcp_path)
        document = self.metadata()

        async def handle(request: Request) -> Response:
            return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

        path = urlsplit(self.metadata_url).path
        return [Route(path, endpoint=cors_middleware(handle, ["GET", "OPTIONS"]),
                      methods=["GET", "OPTIONS"])]

    def get_middleware(self) -> list[Any]:
        # in place of FastMCP's AuthenticationMiddleware + BearerAuthBackend (Bearer only)
        middleware: list[Any] = [
            ASGIMiddleware(
                BrokerAuthentication,
                verifier=self.verifier,
                mcp_path=urlsplit(self.verifier.resource).path or "/",
                resource_metadata_url=self.metadata_url,
                dpop_required=self.dpop_required,
                proof_window=self.dpop_proof_window,
                replay=self.dpop_replay,
                nonces=self.dpop_nonces,
            ),
            ASGIMiddleware(AuthContextMiddleware),
        ]
        checks = self._before_dispatch
        if checks is not None and checks.header_tools is not None:
            middleware.append(ASGIMiddleware(
                ToolVisibilityCheck, authorization=checks.authorization, server=checks.server,
                tools=checks.header_tools))
        if checks is not None and checks.step_up:
            middleware.append(ASGIMiddleware(
                StepUpChallenge, authorization=checks.authorization, server=checks.server,
                mcp_path=urlsplit(self.verifier.resource).path or "/",
                resource_metadata_url=self.metadata_url))
        return middleware


@dataclass(frozen=True, slots=True)
class _BeforeDispatch:
    authorization: CerbosAuthorization
    server: FastMCP[Any]
    step_up: bool
    header_tools: HeaderParameterTools | None


class ProtectionLifespan:
    """It starts what `protect` built with the server and closes it after.

    The revocation feed it built (never a caller's view) is started before the first request
    and closed at shutdown, as are the JWKS HTTP client, the DPoP replay store's Redis client
    and the Cerbos channel when `protect` created them; they reopen lazily if the server is
    started again.
    """

    def __init__(self, *, feed: ManagedRevocationView | None,
                 closers: list[Callable[[], Awaitable[None]]]) -> None:
        self.feed = feed
        self.closers = closers

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        if self.feed is not None:
            await self.feed.start()
        try:
            yield
        finally:
            closers = [*self.closers, *([self.feed.aclose] if self.feed is not None else [])]
            for close in closers:
                try:
                    await close()
                except Exception:  # shutdown goes on; one failure is only logged
                    logger.warning("closing %s failed at shutdown", close, exc_info=True)

    def install(self, mcp: FastMCP[Any]) -> None:
        """Run with `mcp`'s own lifespan, outside it (started first, closed last).

        FastMCP 4 enters a server's lifespan callable (`_lifespan`) once per start, so wrapping
        it costs requests nothing. A `Provider` would work too, and did, but FastMCP fans every
        tool lookup and listing out to each provider in a task group: one more task on each,
        about a fifth of what the plugin added to a tools/call (issue 3's profile). Should a
        FastMCP release drop `_lifespan`, a Provider it is again."""
        inner = getattr(mcp, "_lifespan", None)
        if not callable(inner):
            mcp.add_provider(_LifespanProvider(self))
            return

        @asynccontextmanager
        async def lifespan(server: FastMCP[Any]) -> AsyncIterator[Any]:
            async with self.lifespan(), inner(server) as result:
                yield result

        mcp._lifespan = lifespan


class _LifespanProvider(Provider):
    """No components: only the protection's lifespan, for FastMCP without `_lifespan`."""

    def __init__(self, protection: ProtectionLifespan) -> None:
        super().__init__()
        self.protection = protection

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        async with self.protection.lifespan():
            yield


@dataclass(frozen=True, slots=True)
class Protection:
    """What `protect` installed, for tests and for servers that want to reach the parts."""

    verifier: BrokerTokenVerifier
    authorization: CerbosAuthorization
    auth: BrokerAuthProvider
    revocations: RevocationView


def protect(
    mcp: FastMCP[Any],
    *,
    broker: str,
    resource: str,
    cerbos: str | PolicyDecisionPoint,
    redis_url: str | None = None,
    resource_kind: str = DEFAULT_RESOURCE_KIND,
    revocations: RevocationView | None = None,
    scopes_supported: list[str] | None = None,
    resource_name: str | None = None,
    cerbos_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_resources_per_request: int = DEFAULT_MAX_RESOURCES_PER_REQUEST,
    leeway: int = MAX_LEEWAY_SECONDS,
    step_up_challenge: bool = True,
    http_client: httpx.AsyncClient | None = None,
    revocation_key_prefix: str = "ab:",
    revocation_staleness_seconds: float = 5.0,
    dpop_required: bool = False,
    dpop_proof_window_seconds: int = DEFAULT_PROOF_WINDOW_SECONDS,
    dpop_replay: ProofReplayCache | None = None,
    dpop_nonce_secret: str | bytes | None = None,
    decision_cache_seconds: float = DEFAULT_DECISION_CACHE_SECONDS,
) -> Protection:
    """Protect `mcp`: agent tokens of `broker` for `resource`, every operation asked of Cerbos.

    `broker` is the broker's issuer URL, `resource` this server's MCP endpoint URI (the `aud`
    of its tokens; its path is where the server must be mounted), `cerbos` a gRPC "host:port"
    or any `PolicyDecisionPoint`. Call it once, before serving.

    Revocations: `revocations` if given (its lifecycle stays the caller's), else a
    `RedisRevocationFeed` on `redis_url` (the broker's `redis_key_prefix` must equal
    `revocation_key_prefix`; every token is refused while the feed has heard nothing from
    Redis for `revocation_staleness_seconds`), else an empty `StaticRevocations`.

    DPoP (RFC 9449): tokens bound to a key (`cnf.jkt`) are accepted only with the DPoP scheme
    and a fresh proof by that key (`iat` within `dpop_proof_window_seconds`); with
    `dpop_required`, unbound tokens are refused too, and the metadata says so. A proof is
    accepted once: `dpop_replay` if given (its lifecycle stays the caller's), else, with
    `redis_url`, a `RedisProofReplayCache` shared by every replica on that Redis under
    `revocation_key_prefix` (even when `revocations` is the caller's: replicas are replicas
    whatever their revocation view; Redis unreachable: 503), else one per process in memory.
    With `dpop_nonce_secret` (at least 32 bytes, the same on every replica of this server),
    proofs must also carry a nonce issued for `resource` within the last minute or two: a
    proof without one gets 401 `use_dpop_nonce` and the nonce in `DPoP-Nonce` (RFC 9449 §9),
    as does every DPoP response. Bearer requests are unaffected.

    Cerbos's answers are reused for `decision_cache_seconds` (0: never) for the exact same
    question; revocation and token checks are never cached (mcp_plugin/decision_cache.py).
    """
    if mcp.auth is not None:
        raise ValueError("this FastMCP server already has an auth provider")
    nonces = None if dpop_nonce_secret is None else NonceIssuer(  # a short secret fails here
        dpop_nonce_secret, label=resource)
    feed: RedisRevocationFeed | None = None
    if revocations is None and redis_url is not None:
        feed = RedisRevocationFeed(
            redis_url, key_prefix=revocation_key_prefix,
            staleness_seconds=revocation_staleness_seconds,
        )
        revocations = feed
    elif revocations is None:
        revocations = StaticRevocations()
    verifier = BrokerTokenVerifier(
        broker=broker, resource=resource, revocations=revocations, leeway=leeway,
        http_client=http_client,
    )
    authorization = CerbosAuthorization(
        cerbos,
        resource_kind=resource_kind,
        timeout=cerbos_timeout,
        max_resources_per_request=max_resources_per_request,
        decision_cache_seconds=decision_cache_seconds,
    )
    closers: list[Callable[[], Awaitable[None]]] = [verifier.keys.aclose]
    if dpop_replay is None and redis_url is not None:
        redis_replay = RedisProofReplayCache(redis_url, key_prefix=revocation_key_prefix)
        closers.append(redis_replay.aclose)
        dpop_replay = redis_replay
    elif dpop_replay is None:
        dpop_replay = MemoryProofReplayCache()  # one for every app built from this server
    auth = BrokerAuthProvider(
        verifier, scopes_supported=scopes_supported, resource_name=resource_name,
        dpop_required=dpop_required, dpop_proof_window=dpop_proof_window_seconds,
        dpop_replay=dpop_replay, dpop_nonces=nonces,
    )
    auth.check_before_dispatch(authorization, mcp, step_up=step_up_challenge,
                               header_tools=guard_input_schemas(mcp))
    mcp.auth = auth
    mcp.add_middleware(authorization)
    if isinstance(cerbos, str) and isinstance(authorization.pdp, CerbosPolicyPoint):
        closers.append(authorization.pdp.aclose)
    ProtectionLifespan(feed=feed, closers=closers).install(mcp)
    return Protection(verifier, authorization, auth, revocations)
