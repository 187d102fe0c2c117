"""The admin API under /admin: sessions, revocations, agents, audit (contract §4, §7).

Every request is authenticated (`admin_auth`) and then authorized by ONE Cerbos
CheckResources on kind `broker_admin` (policies/broker_admin.yaml): admins may do
everything, auditors read, and every human may see and revoke their own agents' sessions.
A session the caller may not read is answered exactly like a missing one (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from broker.audit import MAX_QUERY_LIMIT, AuditQuery
from broker.errors import (
    AccessDenied,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    TemporarilyUnavailable,
)
from broker.http.admin_auth import AdminCaller, authenticate_admin
from broker.http.errors import NO_STORE
from broker.http.openapi_docs import ADMIN_ERRORS
from broker.http.services import BrokerServices
from broker.pdp.cerbos import AdminCheck
from broker.revocation import MAX_REASON_LENGTH, RevocationTarget, TargetKind

router = APIRouter(prefix="/admin", tags=["admin"], responses=ADMIN_ERRORS)
Caller = Annotated[AdminCaller, Depends(authenticate_admin)]
ID = Annotated[str, Field(min_length=1, max_length=512)]
# Bounds Redis accepts: an unbounded integer reached Redis as an invalid offset or stream id
# and came back as 503, blaming a dependency for a bad request (found by tests/security fuzz).
MAX_CURSOR = 2**31 - 1
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


class RevokeSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=MAX_REASON_LENGTH)


class CreateRevocation(BaseModel):
    """Exactly one grain: `token`, `session`, `user`, `agent`, or `user` with `agent`."""

    model_config = ConfigDict(extra="forbid")
    user: ID | None = None
    agent: ID | None = None
    session: ID | None = None
    token: ID | None = None
    reason: str = Field(default="", max_length=MAX_REASON_LENGTH)


def _services(request: Request) -> BrokerServices:
    services: BrokerServices = request.app.state.services
    return services


def _json(body: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=NO_STORE)


async def _allowed(services: BrokerServices, caller: AdminCaller,
                   checks: list[AdminCheck]) -> list[bool]:
    try:
        return await services.pdp.check_admin(caller.principal, checks)
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None


async def _require(services: BrokerServices, caller: AdminCaller, action: str,
                   resource_id: str, *, user: str | None = None, agent: str | None = None,
                   **extra: str) -> None:
    check = AdminCheck(action, resource_id, {"user": user or "", "agent": agent or "", **extra})
    if not (await _allowed(services, caller, [check]))[0]:
        raise AccessDenied()


async def _guard(op: Any) -> Any:
    try:
        return await op
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None


@router.get("/me")
async def me(request: Request, caller: Caller) -> JSONResponse:
    """Who the caller is and what they may do in general (the console shows what fits)."""
    services = _services(request)
    own = {"user": caller.principal.subject, "agent": ""}
    anyone = {"user": "", "agent": ""}
    checks = [
        AdminCheck("sessions:list", "all-sessions", anyone),
        AdminCheck("sessions:revoke", "any-session", anyone),
        AdminCheck("audit:read", "all-audit", anyone),
        AdminCheck("revocations:list", "revocations", anyone),
        AdminCheck("agents:list", "agents", anyone),
        AdminCheck("revocations:create", "revoke-agent", {**anyone, "kind": "agent"}),
        AdminCheck("sessions:list", "own-sessions", own),
    ]
    allowed = await _allowed(services, caller, checks)
    names = ["list_all_sessions", "revoke_any_session", "read_all_audit", "list_revocations",
             "list_agents", "revoke_agents", "list_own_sessions"]
    return _json({"subject": caller.principal.subject, "issuer": caller.issuer,
                  "roles": list(caller.principal.roles),
                  "can": dict(zip(names, allowed, strict=True))})


@router.get("/sessions")
async def list_sessions(
    request: Request, caller: Caller,
    user: Annotated[str | None, Query(max_length=512)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    services = _services(request)
    await _require(services, caller, "sessions:list", "sessions", user=user, agent=agent)
    page, next_cursor = await _guard(services.admin.list_sessions(
        user=user or None, agent=agent or None, offset=cursor, limit=limit))
    return _json({"sessions": [s.to_dict() for s in page], "next_cursor": next_cursor})


async def _readable_session(services: BrokerServices, caller: AdminCaller, sid: str,
                            *also: str) -> Any:
    """The session's status, after checking `sessions:read` and the actions in `also`."""
    status = await _guard(services.admin.session(sid))
    if status is None:
        raise NotFound()
    attr = {"user": status.record.subject, "agent": status.record.agent}
    checks = [AdminCheck(action, f"{sid}#{action}", attr) for action in ("sessions:read", *also)]
    allowed = await _allowed(services, caller, checks)
    if not allowed[0]:
        raise NotFound()
    if not all(allowed):
        raise AccessDenied()
    return status


@router.get("/sessions/{sid}")
async def get_session(request: Request, caller: Caller, sid: str) -> JSONResponse:
    services = _services(request)
    status = await _readable_session(services, caller, sid)
    children = await _guard(services.admin.children(sid))
    return _json({**status.to_dict(), "children": children})


@router.post("/sessions/{sid}/revoke")
async def revoke_session(request: Request, caller: Caller, sid: str,
                         body: RevokeSession | None = None) -> JSONResponse:
    services = _services(request)
    status = await _readable_session(services, caller, sid, "sessions:revoke")
    reason = body.reason if body is not None else ""
    outcome = await _guard(services.admin.revoke(
        RevocationTarget(TargetKind.SESSION, sid=sid), revoked_by=caller.name, reason=reason,
        session=status.record))
    return _json(outcome.to_dict())


@router.post("/revocations", status_code=201)
async def create_revocation(request: Request, caller: Caller,
                            body: CreateRevocation) -> JSONResponse:
    services = _services(request)
    try:
        target = RevocationTarget.build(user=body.user, agent=body.agent, session=body.session,
                                        token=body.token)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if target.kind is TargetKind.SESSION:
        assert target.sid is not None
        status = await _readable_session(services, caller, target.sid, "sessions:revoke")
        outcome = await _guard(services.admin.revoke(
            target, revoked_by=caller.name, reason=body.reason, session=status.record))
    else:
        await _require(services, caller, "revocations:create", "revocation",
                       user=target.subject, agent=target.agent, kind=target.kind.value)
        outcome = await _guard(services.admin.revoke(target, revoked_by=caller.name,
                                                     reason=body.reason))
    return _json(outcome.to_dict(), status_code=201)


@router.get("/revocations")
async def list_revocations(
    request: Request, caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    services = _services(request)
    await _require(services, caller, "revocations:list", "revocations")
    items = await _guard(services.admin.list_revocations(limit))
    return _json({"revocations": [{**i.record, "entries": i.entries, "forget_at": i.forget_at}
                                  for i in items]})


@router.get("/agents")
async def list_agents(request: Request, caller: Caller) -> JSONResponse:
    services = _services(request)
    await _require(services, caller, "agents:list", "agents")
    return _json({"agents": services.admin.agents()})


@router.get("/audit")
async def read_audit(
    request: Request, caller: Caller,
    user: Annotated[str | None, Query(max_length=512)] = None,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(pattern="^(exchange|revocation)$")] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_EPOCH_SECONDS)] = None,
    until: Annotated[int | None, Query(ge=0, le=MAX_EPOCH_SECONDS)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_QUERY_LIMIT)] = 100,
) -> JSONResponse:
    services = _services(request)
    await _require(services, caller, "audit:read", "audit", user=user, agent=agent)
    query = AuditQuery(user=user or None, agent=agent or None, type=type, since=since,
                       until=until, limit=limit)
    return _json({"records": await _guard(services.admin.audit(query))})
