"""Who is calling the admin API: a bearer token of an upstream issuer, or the console session.

A bearer token is validated like a subject token, but against `admin.audiences` (RFC 6750;
a failure is 401 `invalid_token` with a `WWW-Authenticate: Bearer` challenge). The web
console keeps the upstream ID token of the signed-in human in its signed session cookie and
is validated the same way on every request; state-changing console requests must also carry
the session's CSRF token in `X-CSRF-Token` (compared in constant time).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from broker.errors import DependencyUnavailable, InvalidGrant, InvalidToken, TemporarilyUnavailable
from broker.http.services import BrokerServices
from broker.pdp.cerbos import AdminPrincipal

SESSION_TOKEN = "admin_token"
"""The console's session key holding the signed-in human's upstream ID token."""
SESSION_CSRF = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})



@dataclass(frozen=True, slots=True)
class AdminCaller:
    principal: AdminPrincipal
    issuer: str
    via_console: bool

    @property
    def name(self) -> str:
        """How revocations record who did them."""
        return self.principal.subject


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken()
    return value.strip()


def _console_token(request: Request) -> str | None:
    if "session" not in request.scope:  # no console configured: no session middleware
        return None
    token = request.session.get(SESSION_TOKEN)
    return token if isinstance(token, str) else None


def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(SESSION_CSRF)
    given = request.headers.get(CSRF_HEADER, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected.encode(),
                                                                 given.encode()):
        raise InvalidToken("The console session needs its CSRF token for this request.")


async def authenticate_admin(request: Request) -> AdminCaller:
    services: BrokerServices = request.app.state.services
    validator = services.admin_tokens
    token = _bearer(request)
    via_console = False
    if token is None:
        token = _console_token(request)
        via_console = token is not None
    if token is None or validator is None:
        raise InvalidToken()
    if via_console:
        _check_csrf(request)
    try:
        identity = await validator.validate_subject_token(token)
    except InvalidGrant:
        if via_console:
            request.session.clear()
        raise InvalidToken() from None
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None
    principal = AdminPrincipal(identity.subject, identity.roles, identity.user_claims())
    return AdminCaller(principal, identity.issuer, via_console)
