"""POST /oauth2/token (RFC 8693), /oauth2/introspect (RFC 7662) and /oauth2/revoke (RFC 7009)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from broker import tokens
from broker.claims import AgentToken
from broker.errors import (
    DependencyUnavailable,
    InvalidRequest,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from broker.exchange import GRANT_TYPE, bound_key, parse_exchange_request
from broker.http import openapi_docs as docs
from broker.http.dpop import proven_key
from broker.http.errors import NO_STORE, dpop_nonce
from broker.http.forms import read_form
from broker.http.metrics import EXCHANGE_SECONDS, EXCHANGES
from broker.http.services import BrokerServices
from broker.jws import TokenRejected
from broker.revocation import RevocationTarget, TargetKind

router = APIRouter()
log = logging.getLogger("broker.exchange")

def _services(request: Request) -> BrokerServices:
    services: BrokerServices = request.app.state.services
    return services


def _own_live_token(services: BrokerServices, form: Mapping[str, str], *,
                    audience: str | None = None) -> AgentToken | None:
    """The form's `token`, if it is a live agent token of this broker (introspection and
    revocation answer the same for anything else: inactive, nothing to revoke)."""
    token_value = form.get("token")
    if not token_value:
        raise InvalidRequest("The token parameter is required.")
    now = services.clock()
    try:
        return tokens.verify(token_value, services.keyring.current(now),
                             issuer=services.settings.issuer, now=now, leeway=0,
                             audience=audience)
    except TokenRejected as exc:
        log.debug("not a live agent token of ours (%s)", exc)
        return None


@router.post("/oauth2/token", openapi_extra=docs.TOKEN_FORM, responses=docs.TOKEN_RESPONSES,
             tags=["oauth2"])
async def token(request: Request) -> JSONResponse:
    services = _services(request)
    with EXCHANGE_SECONDS.time():
        outcome = "error"
        try:
            form = await read_form(request, services.settings.max_request_bytes)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise InvalidRequest("The grant_type parameter is required.")
            if grant_type != GRANT_TYPE:
                raise UnsupportedGrantType()
            client_id = await services.auth_limiter.authenticate(services.agent_auth, request,
                                                                 form)
            agent = services.settings.agent(client_id)
            if agent is None:  # authenticated against the same settings: cannot happen
                raise UnauthorizedClient()
            exchange = parse_exchange_request(form, dpop_jkt=await proven_key(request, services))
            if "actor_token" in form:
                await services.agent_auth.verify_actor(client_id, form["actor_token"])
            result = await services.grant.exchange(agent, exchange)
            outcome = "granted"
        except Exception as exc:
            outcome = getattr(exc, "error", "server_error")
            raise
        finally:
            EXCHANGES.labels(outcome=outcome).inc()
    session = result.session
    log.info(
        "exchange granted",
        extra={"sid": session.sid, "parent_sid": session.parent_sid, "sub": session.subject,
               "agent": session.agent, "actors": list(session.actors),
               "resource": session.resource, "granted": list(session.scopes_granted),
               "dropped": [[d.scope, d.reason] for d in session.scopes_dropped]},
    )
    nonce = dpop_nonce(request)
    return JSONResponse(result.to_body(),
                        headers=NO_STORE if nonce is None else {**NO_STORE, "DPoP-Nonce": nonce})


@router.post("/oauth2/introspect", openapi_extra=docs.INTROSPECT_FORM,
             responses=docs.INTROSPECT_RESPONSES, tags=["oauth2"])
async def introspect(request: Request) -> JSONResponse:
    services = _services(request)
    form = await read_form(request, services.settings.max_request_bytes)
    caller = await services.auth_limiter.authenticate(services.resource_auth, request, form)
    resource = next(r.uri for r in services.settings.resources if r.client_id == caller)
    inactive = JSONResponse({"active": False}, headers=NO_STORE)
    agent_token = _own_live_token(services, form, audience=resource)
    if agent_token is None:
        return inactive
    try:
        active = await services.admin.is_active(agent_token)
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None
    if not active:
        return inactive
    token_type = "DPoP" if bound_key(agent_token) else "Bearer"  # `cnf` is among the claims
    body = {"active": True, "token_type": token_type, **agent_token.claims}
    return JSONResponse(body, headers=NO_STORE)


@router.post("/oauth2/revoke", openapi_extra=docs.REVOKE_FORM, responses=docs.REVOKE_RESPONSES,
             tags=["oauth2"])
async def revoke(request: Request) -> JSONResponse:
    """RFC 7009: an agent revokes one of its own tokens, and with it every token delegated from
    it. Tokens that are not ours, malformed or already expired get 200: nothing to revoke."""
    services = _services(request)
    form = await read_form(request, services.settings.max_request_bytes)
    client_id = await services.auth_limiter.authenticate(services.agent_auth, request, form)
    ok = JSONResponse({}, headers=NO_STORE)
    agent_token = _own_live_token(services, form)
    if agent_token is None:
        return ok
    if agent_token.client_id != client_id:
        raise UnauthorizedClient("A client may only revoke tokens issued to it.")
    try:
        session = await services.sessions.get_session(agent_token.sid)
        await services.admin.revoke(
            RevocationTarget(TargetKind.TOKEN, jti=agent_token.jti),
            revoked_by=f"client:{client_id}", reason="RFC 7009 revocation by the agent",
            expires_at=agent_token.expires_at, session=session,
        )
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None
    log.info("token revoked by its agent",
             extra={"agent": client_id, "sid": agent_token.sid, "sub": agent_token.subject})
    return ok
