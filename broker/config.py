"""Broker configuration: one YAML file, every scalar overridable by `BROKER_<SECTION>__<KEY>`.

Validation happens once, at start, and names every problem by its path (`agents[0].auth`),
so `agent-broker check --config F` and `serve` report the same thing. Values in the
environment win over the file; secret-bearing files can live in `BROKER_SECRETS_DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from broker.dpop_nonce import MIN_SECRET_BYTES as MIN_NONCE_SECRET_BYTES
from broker.scopes import check_scope_syntax
from broker.secrets import check_hash_format

MAX_LEEWAY_SECONDS = 30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_absolute_uri(value: str, *, allow_path: bool = True) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URI")
    if parts.fragment or "#" in value:
        raise ValueError("must not contain a fragment")
    if not allow_path and parts.path not in ("", "/"):
        raise ValueError("must not contain a path")
    return value


class SigningSettings(_Strict):
    keys_file: Path = Path(".run/keys.json")
    """The signing keys (JWKS with private parts); created with mode 0600 if absent."""
    algorithm: Literal["EdDSA", "ES256"] = "EdDSA"
    """Algorithm of new signing keys (`agent-broker keys rotate`); existing keys keep theirs."""
    retired_key_grace_seconds: int = Field(default=600, ge=0)
    """How long a retired key stays in the JWKS after its last possible token expired."""


class CerbosSettings(_Strict):
    address: str = "127.0.0.1:3593"
    """The Cerbos PDP, and which of its APIs to use: `host:port` is its gRPC API (port 3593
    by default); `http://host:port` or `https://host:port` (no path) its REST API (HTTP port,
    3592 by default), the form Cerbos's own SDKs use. The answers are the same; the choice
    moves CPU between the broker and Cerbos (docs/operations.md#cerbos-grpc-or-rest)."""
    timeout_ms: int = Field(default=500, ge=10, le=30_000)
    """Per request; past it the exchange answers 503 `temporarily_unavailable` (fails closed)."""
    tls: bool = False
    """Speak TLS to Cerbos's gRPC API; for the REST API an `https://` address says it."""
    max_resources_per_request: int = Field(default=50, ge=1)
    """Cerbos's per-request resource limit: larger checks are sent in chunks of this size."""
    rest_max_connections: int = Field(default=16, ge=1, le=1024)
    """REST API only: keep-alive connections to Cerbos at most, each carrying one request at
    a time; more requests wait their turn within `timeout_ms`. Size it to the exchanges one
    process has in flight (gRPC multiplexes over one connection and needs no such setting)."""

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if "://" not in v:
            return v  # a gRPC target, as it always was
        parts = urlsplit(_check_absolute_uri(v, allow_path=False))
        if parts.query or "?" in v or not parts.hostname or "@" in parts.netloc:
            raise ValueError("must be http(s)://host:port, without credentials or query")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError("has an invalid port") from None
        return v.rstrip("/")

    @model_validator(mode="after")
    def _tls_for_grpc(self) -> CerbosSettings:
        if self.tls and self.address.startswith("http://"):
            raise ValueError("`tls` is for the gRPC API; use an https:// address for TLS to "
                             "the REST API")
        if "rest_max_connections" in self.model_fields_set and not self.rest:
            raise ValueError("`rest_max_connections` is for the REST API (an http(s):// "
                             "address); the gRPC API multiplexes over one connection")
        return self

    @property
    def rest(self) -> bool:
        """The address names the REST API (an http(s) URL), not the gRPC one."""
        return self.address.startswith(("http://", "https://"))


class UpstreamIssuer(_Strict):
    issuer: str
    """The OIDC issuer URL, exactly as in its tokens' `iss`; its JWKS is found by discovery."""
    audiences: list[str] = Field(min_length=1)
    """Accepted `aud` values of subject tokens (the client_id users sign in with)."""
    roles_claim: str = "roles"
    """Dotted path into the claims, e.g. `realm_access.roles`."""
    jwks_uri: str | None = None
    """Skip OIDC discovery and use this JWKS directly."""
    algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                             "ES256", "ES384", "ES512", "EdDSA"]] | None = None
    """Accepted signature algorithms; default: every asymmetric one its keys support."""

    _issuer = field_validator("issuer")(lambda v: _check_absolute_uri(v))

    @field_validator("jwks_uri")
    @classmethod
    def _jwks(cls, v: str | None) -> str | None:
        return None if v is None else _check_absolute_uri(v)


class ClientSecretAuth(_Strict):
    method: Literal["client_secret_basic", "client_secret_post"]
    """How the client sends its secret: HTTP Basic, or `client_id`/`client_secret` form fields."""
    secret_hash: str
    """The hash printed by `agent-broker agents hash-secret`; never the secret itself."""

    @field_validator("secret_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if not check_hash_format(v):
            raise ValueError("is not a hash from `agent-broker agents hash-secret`")
        return v


class PrivateKeyJwtAuth(_Strict):
    method: Literal["private_key_jwt"]
    """The client signs a JWT assertion (RFC 7523) with a key from `jwks` or `jwks_uri`."""
    jwks: dict[str, Any] | None = None
    """The client's public keys inline: `{keys: [...]}`."""
    jwks_uri: str | None = None
    """Where to fetch the client's public keys instead."""

    @model_validator(mode="after")
    def _one_source(self) -> PrivateKeyJwtAuth:
        if (self.jwks is None) == (self.jwks_uri is None):
            raise ValueError("give exactly one of `jwks` and `jwks_uri`")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError("`jwks` must be a JWK set: {keys: [...]}")
        if self.jwks_uri is not None:
            _check_absolute_uri(self.jwks_uri)
        return self


ClientAuth = Annotated[ClientSecretAuth | PrivateKeyJwtAuth, Field(discriminator="method")]


class Agent(_Strict):
    client_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$")
    """The agent's OAuth client id: `client_id` and `act.sub` of its tokens."""
    auth: ClientAuth
    """How it authenticates at the token endpoint (`method` selects the kind)."""
    scopes: list[str] = Field(min_length=1)
    """Declared scope, the most it can ever get; `ns:*` expands against a resource's catalog."""
    resources: list[str] = Field(min_length=1)
    """The resource URIs (from `resources`) it may ask tokens for."""
    may_delegate_to: list[str] = []
    """Agents that may exchange this agent's tokens for narrower ones (re-delegation)."""
    dpop_bound: bool = False
    """Require a DPoP proof (RFC 9449) on its token requests: every token it gets is bound to
    its key (`cnf.jkt`). When false, a proof is still honoured if the agent sends one."""

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for scope in v:
            check_scope_syntax(scope, allow_wildcard=True)
        return v


class Resource(_Strict):
    uri: str
    """The MCP server's resource indicator (RFC 8707): the `aud` of tokens for it."""
    scopes: list[str] = Field(min_length=1)
    """Its scope catalog: no token for it carries anything else."""
    client_id: str | None = None
    """Set with `auth` to let this MCP server call introspection."""
    auth: ClientSecretAuth | None = None

    _uri = field_validator("uri")(lambda v: _check_absolute_uri(v))

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for scope in v:
            check_scope_syntax(scope, allow_wildcard=False)
        return v

    @model_validator(mode="after")
    def _auth_pair(self) -> Resource:
        if (self.client_id is None) != (self.auth is None):
            raise ValueError("give both `client_id` and `auth`, or neither")
        return self


class AuditSettings(_Strict):
    """The audit trail: Redis streams trimmed to a length, so memory stays bounded."""

    max_len: int = Field(default=100_000, ge=100)
    """Records kept in the stream of all records (the oldest are trimmed first)."""
    per_subject_max_len: int = Field(default=10_000, ge=10)
    """Each user's and each agent's own stream (for fast filtered queries)."""
    retention_seconds: int = Field(default=30 * 86_400, ge=3600)
    """An idle user's or agent's stream, and the list of past revocations, expire after this."""


class RateLimitSettings(_Strict):
    """Failed client authentications allowed per `window_seconds` (docs/security.md).

    A burst of `limit` failures is allowed, then one per window/limit; 0 turns a limit off.
    Only failures count, so legitimate clients never meet these limits on their own.
    """

    failed_auth_per_client: int = Field(default=30, ge=0, le=100_000)
    """Failed authentications per window for one client id (known or not); then 429."""
    failed_auth_per_ip: int = Field(default=100, ge=0, le=100_000)
    """Failed authentications per window from one source address (IPv6: one /64)."""
    window_seconds: int = Field(default=60, ge=1, le=3600)
    """The window; a spent budget refills at one failure per window / limit."""


class ConsoleSettings(_Strict):
    """The web console at /admin/: an OIDC client of an upstream issuer (code flow)."""

    client_id: str
    """The console's client at the upstream issuer; list it in `admin.audiences` too."""
    client_secret: SecretStr | None = None
    """From `BROKER_ADMIN__CONSOLE__CLIENT_SECRET` or a secrets file, not from YAML."""
    issuer: str | None = None
    """Which `upstream_issuers` entry to sign in with; the first one when not set."""
    session_secret: SecretStr
    """Signs the console's session cookie; from env or a secrets file."""
    scopes: str = "openid profile email"
    """Scopes the console asks for at sign-in."""
    session_max_age_seconds: int = Field(default=3600, ge=60, le=86_400)
    """How long a console sign-in lasts (its session cookie's max age)."""
    secure_cookies: bool | None = None
    """Default: when `issuer` (the broker's) is https."""


class AdminSettings(_Strict):
    audiences: list[str] = []
    """Accepted `aud` of admin bearer tokens from `upstream_issuers`; empty closes the admin API."""
    console: ConsoleSettings | None = None


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BROKER_", env_nested_delimiter="__", extra="forbid", frozen=True,
    )

    issuer: str = "http://127.0.0.1:8400"
    """`iss` of minted tokens, and the base URL of every endpoint."""
    token_ttl_seconds: int = Field(default=300, ge=10, le=86_400)
    """Lifetime of agent tokens (never past the subject token's `exp`)."""
    session_ttl_seconds: int = Field(default=28_800, ge=10)
    """Upper bound of one delegation lineage: no token descended from a login outlives it."""
    max_delegation_depth: int = Field(default=3, ge=1, le=10)
    """Agents in one chain, the first included; deeper re-delegation is `invalid_grant`."""
    clock_leeway_seconds: int = Field(default=30, ge=0, le=MAX_LEEWAY_SECONDS)
    """Tolerated clock skew when checking `exp`, `nbf` and `iat` of incoming tokens."""
    dpop_proof_window_seconds: int = Field(default=60, ge=5, le=300)
    """A DPoP proof's `iat` may be this far from our clock, either way; its `jti` is
    remembered in Redis that long, so a proof is accepted once across all broker processes."""
    dpop_nonce_secret: SecretStr | None = None
    """Set it (at least 32 bytes, the same on every broker process) to require DPoP nonces
    (RFC 9449 §8) at the token endpoint: a proof must carry a nonce this broker issued in the
    last one to two minutes, which bounds proofs signed ahead of time by someone who held an
    agent's key for a moment. A proof without one gets 400 `use_dpop_nonce` and the nonce in
    `DPoP-Nonce`; `broker.client` retries with it. Unset: no nonces."""
    signing: SigningSettings = SigningSettings()
    redis_url: str = "redis://127.0.0.1:6380/0"
    """Sessions, revocations and the audit trail; run Redis with AOF."""
    redis_timeout_ms: int = Field(default=500, ge=10, le=30_000)
    """Per command; past it the broker answers 503 and mints nothing (fails closed)."""
    redis_key_prefix: str = "ab:"
    """Prefix of every key; MCP servers reading revocations must use the same one."""
    cerbos: CerbosSettings = CerbosSettings()
    upstream_issuers: list[UpstreamIssuer] = []
    """Whose user tokens are accepted as subject tokens (and as admin tokens)."""
    agents: list[Agent] = []
    """The OAuth clients that act for users."""
    resources: list[Resource] = []
    """The MCP servers tokens can be minted for."""
    max_request_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    """Largest form body accepted by the /oauth2 endpoints."""
    upstream_http_timeout_ms: int = Field(default=2000, ge=100)
    """Timeout of calls to upstream issuers (OIDC discovery, JWKS, the console's sign-in)."""
    revocation_retention_seconds: int = Field(default=86_400, ge=60)
    """How long a user or agent revocation keeps refusing subject tokens issued before it:
    set it at least as long as the upstream issuers' longest token lifetime."""
    audit: AuditSettings = AuditSettings()
    admin: AdminSettings = AdminSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()

    _issuer = field_validator("issuer")(lambda v: _check_absolute_uri(v).rstrip("/"))

    @field_validator("dpop_nonce_secret")
    @classmethod
    def _nonce_secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().encode()) < MIN_NONCE_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_NONCE_SECRET_BYTES} bytes")
        return v

    @model_validator(mode="after")
    def _cross_references(self) -> BrokerSettings:
        problems: list[str] = []
        if self.token_ttl_seconds > self.session_ttl_seconds:
            problems.append("token_ttl_seconds: must not exceed session_ttl_seconds")
        problems += _duplicates("agents", [a.client_id for a in self.agents])
        problems += _duplicates("resources", [r.uri for r in self.resources])
        problems += _duplicates("upstream_issuers", [u.issuer for u in self.upstream_issuers])
        console = self.admin.console
        if console is not None:
            if not self.admin.audiences:
                problems.append("admin.audiences: the console needs at least one admin audience")
            known = {u.issuer for u in self.upstream_issuers}
            if console.issuer is not None and console.issuer not in known:
                problems.append(f"admin.console.issuer: {console.issuer!r} is not in "
                                "`upstream_issuers`")
            if console.issuer is None and not known:
                problems.append("admin.console: needs an entry in `upstream_issuers`")
        catalog = {r.uri: r for r in self.resources}
        agent_ids = {a.client_id for a in self.agents}
        for i, agent in enumerate(self.agents):
            for j, uri in enumerate(agent.resources):
                if uri not in catalog:
                    problems.append(f"agents[{i}].resources[{j}]: {uri!r} is not in `resources`")
            for j, other in enumerate(agent.may_delegate_to):
                if other not in agent_ids:
                    problems.append(f"agents[{i}].may_delegate_to[{j}]: no agent {other!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def agent(self, client_id: str) -> Agent | None:
        return next((a for a in self.agents if a.client_id == client_id), None)

    def resource(self, uri: str) -> Resource | None:
        return next((r for r in self.resources if r.uri == uri), None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML file, which is passed as init values.
        return env_settings, init_settings, file_secret_settings


def _duplicates(section: str, values: list[str]) -> list[str]:
    seen: set[str] = set()
    dupes = [v for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
    return [f"{section}: {v!r} appears more than once" for v in dict.fromkeys(dupes)]
