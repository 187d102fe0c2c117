"""The RFC 8693 token exchange grant: validate the request, decide the scope, mint the token.

Two phases, as in authlib's grants: `parse_exchange_request` (pure, raises RFC errors for a
malformed request) and `TokenExchangeGrant.exchange` (asks the edges through `broker.ports`).
A subject token is either a user's token from a trusted upstream issuer (a root session) or
an agent token of this broker (re-delegation: a child session that can only narrow).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from broker import scopes as scope_algebra
from broker import tokens
from broker.claims import AgentToken, build_agent_claims
from broker.config import Agent, BrokerSettings
from broker.errors import (
    DependencyUnavailable,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
)
from broker.jws import TokenRejected
from broker.keys import Keyring
from broker.ports import (
    Clock,
    DelegationPolicy,
    DelegationQuestion,
    SessionStore,
    SubjectIdentity,
    SubjectTokenValidator,
)
from broker.revocation import Revoked, TokenFacts, token_facts
from broker.sessions import SessionRecord

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = (ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TYPE)
REQUESTED_TOKEN_TYPES = (ACCESS_TOKEN_TYPE, JWT_TYPE)

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ExchangeRequest:
    subject_token: str
    subject_token_type: str
    resource: str
    scope: tuple[str, ...] | None
    dpop_jkt: str | None = None
    """Thumbprint of the key of the request's checked DPoP proof (RFC 9449), if any."""


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    access_token: str
    expires_in: int
    scope: str
    session: SessionRecord
    bound: bool = False
    """Bound to a DPoP key (`cnf.jkt`): its token type is DPoP (RFC 9449 §5)."""

    def to_body(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "DPoP" if self.bound else "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequest(f"The {name} parameter is required.")
    return value


def _resource_from(form: Mapping[str, str]) -> str:
    resource, audience = form.get("resource"), form.get("audience")
    if not resource and not audience:
        raise InvalidRequest("The resource (or audience) parameter is required.")
    if resource and audience and resource != audience:
        raise InvalidTarget("The resource and audience parameters name different targets.")
    target = resource or audience or ""
    parts = urlsplit(target)
    if "#" in target or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidTarget("The resource must be an absolute URI without a fragment.")
    return target


def parse_exchange_request(form: Mapping[str, str], *,
                           dpop_jkt: str | None = None) -> ExchangeRequest:
    """Check the parameters of a token exchange request (RFC 8693 §2.1); `dpop_jkt` is the
    key of its already checked DPoP proof."""
    subject_token = _required(form, "subject_token")
    subject_token_type = _required(form, "subject_token_type")
    if subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest("The subject_token_type is not supported.")
    requested = form.get("requested_token_type")
    if requested is not None and requested not in REQUESTED_TOKEN_TYPES:
        raise InvalidRequest("Only access tokens can be issued.")
    if ("actor_token" in form) != ("actor_token_type" in form):
        raise InvalidRequest("actor_token and actor_token_type go together.")
    return ExchangeRequest(
        subject_token=subject_token,
        subject_token_type=subject_token_type,
        resource=_resource_from(form),
        scope=scope_algebra.parse_scope_param(form.get("scope")),
        dpop_jkt=dpop_jkt,
    )


def bound_key(token: AgentToken) -> str | None:
    """The `cnf.jkt` of one of our tokens: the thumbprint of the DPoP key it is bound to."""
    cnf = token.claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, Mapping) else None
    return jkt if isinstance(jkt, str) else None


def check_binding_proven(parent: AgentToken, proven: str | None) -> None:
    """Re-delegating a DPoP-bound token takes a proof by the key it is bound to, so a stolen
    bound token cannot be laundered into a fresh one (bound to the thief's key, or to none);
    the child token is then bound to that same key (docs/security.md, "DPoP")."""
    jkt = bound_key(parent)
    if jkt is not None and (proven is None or not hmac.compare_digest(jkt, proven)):
        raise InvalidDPoPProof("The DPoP proof must be made with the subject token's key.")


def new_id() -> str:
    return secrets.token_urlsafe(16)


class TokenExchangeGrant:
    """Decides and mints. Everything it needs from outside comes in through the ports."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        keyring: Callable[[float], Keyring],
        upstream: SubjectTokenValidator,
        policy: DelegationPolicy,
        sessions: SessionStore,
        clock: Clock,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.settings = settings
        self._keyring, self._upstream, self._policy = keyring, upstream, policy
        self._sessions, self._clock, self._new_id = sessions, clock, new_id
        self._catalog = {r.uri: frozenset(r.scopes) for r in settings.resources}
        self._agents = {a.client_id: a for a in settings.agents}

    async def exchange(self, client: Agent, request: ExchangeRequest) -> ExchangeResult:
        now = int(self._clock())
        catalog = self._catalog.get(request.resource)
        if catalog is None or request.resource not in client.resources:
            raise InvalidTarget()
        if client.dpop_bound and request.dpop_jkt is None:
            raise InvalidDPoPProof("This client must send a DPoP proof.")
        if tokens.peek_issuer(request.subject_token) == self.settings.issuer:
            return await self._redelegate(client, request, catalog, now)
        return await self._delegate(client, request, catalog, now)

    async def _delegate(self, client: Agent, request: ExchangeRequest,
                        catalog: frozenset[str], now: int) -> ExchangeResult:
        identity = await self._validate_upstream(request.subject_token)
        attr = identity.user_claims()
        decision = scope_algebra.narrow(requested=request.scope, declared=client.scopes,
                                        catalog=catalog)
        sid = self._new_id()
        return await self._finish(
            client, request, decision, now,
            subject=identity.subject, issuer=identity.issuer, roles=identity.roles,
            principal_attr=attr, chain=(client.client_id,), parent=None, root_sid=sid, sid=sid,
            expires_at=min(now + self.settings.token_ttl_seconds, identity.expires_at),
            lineage_expires_at=now + self.settings.session_ttl_seconds,
            material=TokenFacts(subject=identity.subject, actors=(client.client_id,),
                                issued_at=identity.issued_at),
        )

    async def _redelegate(self, client: Agent, request: ExchangeRequest,
                          catalog: frozenset[str], now: int) -> ExchangeResult:
        if request.subject_token_type == ID_TOKEN_TYPE:
            raise InvalidRequest("An agent token is an access token, not an ID token.")
        parent = self._verify_own(request.subject_token, now)
        parent_agent = self._agents.get(parent.client_id)
        if parent_agent is None or client.client_id not in parent_agent.may_delegate_to:
            raise InvalidGrant("The subject token may not be delegated to this client.")
        if client.client_id in parent.chain:
            raise InvalidGrant("An agent may appear only once in a delegation chain.")
        if parent.depth + 1 > self.settings.max_delegation_depth:
            raise InvalidGrant("The delegation chain would exceed the maximum depth.")
        if request.resource != parent.audience:
            raise InvalidTarget("A re-delegated token keeps the resource of its parent.")
        check_binding_proven(parent, request.dpop_jkt)
        session = await self._load_session(parent.sid)
        if session is None or session.jti != parent.jti:
            raise InvalidGrant()
        decision = scope_algebra.narrow(requested=request.scope, declared=client.scopes,
                                        catalog=catalog, parent=parent.scopes)
        return await self._finish(
            client, request, decision, now,
            subject=parent.subject, issuer=session.issuer, roles=parent.roles,
            principal_attr=session.principal_attr, chain=(*parent.chain, client.client_id),
            parent=parent.sid, root_sid=session.root_sid, sid=self._new_id(),
            expires_at=min(now + self.settings.token_ttl_seconds, parent.expires_at,
                           session.lineage_expires_at),
            lineage_expires_at=session.lineage_expires_at,
            material=replace(token_facts(parent), actors=(*parent.chain, client.client_id)),
        )

    async def _finish(self, client: Agent, request: ExchangeRequest,
                      decision: scope_algebra.ScopeDecision, now: int, *, subject: str,
                      issuer: str, roles: tuple[str, ...], principal_attr: dict[str, Any],
                      chain: tuple[str, ...], parent: str | None, root_sid: str, sid: str,
                      expires_at: int, lineage_expires_at: int,
                      material: TokenFacts) -> ExchangeResult:
        if expires_at <= now:
            raise InvalidGrant()
        if decision.granted:
            question = DelegationQuestion(
                subject=subject, roles=roles, principal_attr=principal_attr,
                agent=client.client_id, resource=request.resource,
                scopes=sorted(decision.granted), actors=chain, request_id=sid,
            )
            try:
                allowed = await self._policy.delegable_scopes(question)
            except DependencyUnavailable:
                raise TemporarilyUnavailable() from None
            decision = decision.drop_unless(allowed, scope_algebra.NOT_DELEGABLE)
        if not decision.granted:
            raise InvalidScope()
        granted = tuple(sorted(decision.granted))
        jti = self._new_id()
        record = SessionRecord(
            sid=sid, subject=subject, issuer=issuer, agent=client.client_id, actors=chain,
            resource=request.resource, scopes_granted=granted, scopes_dropped=decision.dropped,
            parent_sid=parent, root_sid=root_sid, jti=jti, roles=roles, created_at=now,
            expires_at=expires_at, lineage_expires_at=lineage_expires_at,
            principal_attr=principal_attr,
        )
        try:
            await self._sessions.open_session(record, material=material)
        except DependencyUnavailable:
            raise TemporarilyUnavailable() from None
        except Revoked as revoked:
            log.info("exchange refused: subject material revoked",
                     extra={"sub": subject, "agent": client.client_id, "entry": str(revoked)})
            raise InvalidGrant("The subject token has been revoked.") from None
        claims = build_agent_claims(
            issuer=self.settings.issuer, subject=subject, audience=request.resource,
            client_id=client.client_id, scopes=granted, chain=chain, roles=roles, sid=sid,
            jti=jti, issued_at=now, expires_at=expires_at, cnf_jkt=request.dpop_jkt,
        )
        token = tokens.mint(claims, self._keyring(now), now)
        return ExchangeResult(token, expires_at - now, " ".join(granted), record,
                              bound=request.dpop_jkt is not None)

    async def _validate_upstream(self, token: str) -> SubjectIdentity:
        try:
            return await self._upstream.validate_subject_token(token)
        except DependencyUnavailable:
            raise TemporarilyUnavailable() from None

    def _verify_own(self, token: str, now: int) -> AgentToken:
        try:
            return tokens.verify(token, self._keyring(now), issuer=self.settings.issuer, now=now,
                                 leeway=self.settings.clock_leeway_seconds)
        except TokenRejected as exc:
            log.debug("agent subject token rejected: %s", exc)
            raise InvalidGrant() from None

    async def _load_session(self, sid: str) -> SessionRecord | None:
        try:
            return await self._sessions.get_session(sid)
        except DependencyUnavailable:
            raise TemporarilyUnavailable() from None
