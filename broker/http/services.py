"""Builds the broker's collaborators from settings: the one place edges meet the core.

Connections (Redis pool, Cerbos gRPC channel or REST pool, httpx client) are created once per
process and shared; key objects are parsed once, in `KeyringFile` and `JwksCache`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from broker.admin.service import AdminService
from broker.client_assertion import ClientAssertionVerifier
from broker.config import BrokerSettings, PrivateKeyJwtAuth
from broker.dpop_nonce import NonceIssuer
from broker.exchange import TokenExchangeGrant
from broker.http.client_auth import ClientAuthenticator, Registration
from broker.http.rate_limit import FailedAuthLimiter
from broker.jwks import JwksCache
from broker.keys import KeyringFile
from broker.pdp.cerbos import CerbosPolicyPoint
from broker.pdp.cerbos_http import CerbosHttpPolicyPoint
from broker.ports import Clock
from broker.secrets import SecretVerifier
from broker.stores import redis as redis_stores
from broker.stores.redis_audit import RedisAuditLog
from broker.stores.redis_revocations import RedisRevocationStore
from broker.stores.redis_sessions import RedisSessionStore
from broker.upstream import UpstreamValidator


@dataclass
class BrokerServices:
    settings: BrokerSettings
    clock: Clock
    keyring: KeyringFile
    redis: aioredis.Redis
    http: httpx.AsyncClient
    pdp: CerbosPolicyPoint | CerbosHttpPolicyPoint
    sessions: RedisSessionStore
    redis_health: redis_stores.RedisHealth
    grant: TokenExchangeGrant
    agent_auth: ClientAuthenticator
    resource_auth: ClientAuthenticator
    admin: AdminService
    admin_tokens: UpstreamValidator | None
    """Validates admins' bearer tokens (upstream issuers, `admin.audiences`); None: closed."""
    auth_limiter: FailedAuthLimiter
    """Every client authentication goes through it (failed-attempt rate limit)."""
    replay: redis_stores.RedisReplayCache
    """Single-use `jti`s: client assertions and DPoP proofs."""
    nonces: NonceIssuer | None = None
    """DPoP nonces of the token endpoint (`dpop_nonce_secret`); None: not required."""

    @property
    def token_endpoint(self) -> str:
        return token_endpoint(self.settings)

    async def aclose(self) -> None:
        await self.pdp.close()
        await self.http.aclose()
        await self.redis.aclose()


def token_endpoint(settings: BrokerSettings) -> str:
    """The token endpoint's public URI: proofs name it, nonces are bound to it."""
    return f"{settings.issuer}/oauth2/token"


def _policy_point(settings: BrokerSettings) -> CerbosPolicyPoint | CerbosHttpPolicyPoint:
    """The address's form picks Cerbos's API: an http(s) URL is REST, host:port gRPC."""
    cerbos = settings.cerbos
    if cerbos.rest:
        return CerbosHttpPolicyPoint(cerbos.address, timeout_ms=cerbos.timeout_ms,
                                     max_resources_per_request=cerbos.max_resources_per_request,
                                     max_connections=cerbos.rest_max_connections)
    return CerbosPolicyPoint(cerbos.address, timeout_ms=cerbos.timeout_ms, tls=cerbos.tls,
                             max_resources_per_request=cerbos.max_resources_per_request)


def build_services(settings: BrokerSettings, clock: Clock = time.time) -> BrokerServices:
    keyring = KeyringFile(
        settings.signing.keys_file, settings.signing.algorithm,
        max_token_ttl=settings.token_ttl_seconds,
        grace=settings.signing.retired_key_grace_seconds + settings.clock_leeway_seconds,
        clock=clock,
    )
    timeout_s = settings.upstream_http_timeout_ms / 1000
    http = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                             limits=httpx.Limits(max_connections=50))
    redis = redis_stores.connect(settings.redis_url, settings.redis_timeout_ms)
    keys = redis_stores.RedisKeys(settings.redis_key_prefix)
    edge = (redis, keys, settings.redis_timeout_ms, clock)
    sessions = RedisSessionStore(*edge, audit_settings=settings.audit)
    revocations = RedisRevocationStore(*edge, audit_settings=settings.audit)
    pdp = _policy_point(settings)
    upstream = UpstreamValidator(settings.upstream_issuers, http, clock=clock,
                                 leeway_seconds=settings.clock_leeway_seconds)
    grant = TokenExchangeGrant(settings, keyring=keyring.current, upstream=upstream, policy=pdp,
                               sessions=sessions, clock=clock)
    assertions = ClientAssertionVerifier(
        audiences=[token_endpoint(settings), settings.issuer],
        clock=clock, leeway_seconds=settings.clock_leeway_seconds,
    )
    key_sets: dict[str, JwksCache] = {}
    for agent in settings.agents:
        if isinstance(agent.auth, PrivateKeyJwtAuth):
            key_sets[agent.client_id] = (
                JwksCache.from_static(agent.auth.jwks) if agent.auth.jwks is not None
                else JwksCache.from_url(http, agent.auth.jwks_uri or "", clock=clock)
            )
    secrets = SecretVerifier()
    replay = redis_stores.RedisReplayCache(*edge)
    agent_auth = ClientAuthenticator(
        {a.client_id: Registration(a.client_id, a.auth) for a in settings.agents},
        secrets=secrets, assertions=assertions, replay=replay, key_sets=key_sets,
    )
    resource_auth = ClientAuthenticator(
        {r.client_id: Registration(r.client_id, r.auth)
         for r in settings.resources if r.client_id is not None and r.auth is not None},
        secrets=secrets, assertions=assertions, replay=replay, key_sets={},
    )
    admin = AdminService(settings, sessions=sessions, revocations=revocations,
                         audit=RedisAuditLog(*edge), clock=clock)
    admin_tokens = None
    if settings.admin.audiences:
        admin_issuers = [u.model_copy(update={"audiences": settings.admin.audiences})
                         for u in settings.upstream_issuers]
        admin_tokens = UpstreamValidator(admin_issuers, http, clock=clock,
                                         leeway_seconds=settings.clock_leeway_seconds)
    return BrokerServices(
        settings=settings, clock=clock, keyring=keyring, redis=redis, http=http, pdp=pdp,
        sessions=sessions, redis_health=redis_stores.RedisHealth(*edge), grant=grant,
        agent_auth=agent_auth, resource_auth=resource_auth, admin=admin,
        admin_tokens=admin_tokens,
        auth_limiter=FailedAuthLimiter(*edge, settings=settings.rate_limits), replay=replay,
        nonces=_nonces(settings, clock),
    )


def _nonces(settings: BrokerSettings, clock: Clock) -> NonceIssuer | None:
    secret = settings.dpop_nonce_secret
    if secret is None:
        return None
    # bound to the token endpoint's public URI: a resource server sharing the secret by
    # mistake still cannot use the broker's nonces, nor the broker theirs
    return NonceIssuer(secret.get_secret_value(), token_endpoint(settings), clock=clock)
