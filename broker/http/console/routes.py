"""The web console at /admin/: OIDC sign-in for humans, one page, and its static files.

The console holds no authority of its own. Sign-in is the authorization-code flow with PKCE,
state and nonce (authlib) at the upstream issuer; the raw ID token then lives in the signed
session cookie, and `admin_auth` validates it on every admin API call exactly like a bearer
token, so Cerbos decides what the page may show or do. A per-session CSRF token, given to
the page in a <meta> tag, must come back in `X-CSRF-Token` on every state-changing request.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc.errors import JoseError

from broker.config import BrokerSettings
from broker.errors import DependencyUnavailable, InvalidGrant, InvalidToken
from broker.http.admin_auth import CSRF_HEADER, SESSION_CSRF, SESSION_TOKEN
from broker.http.services import BrokerServices

log = logging.getLogger(__name__)

COOKIE_NAME = "ab_console"
LOGIN_PATH = "/admin/login"
CONSOLE_PATH = "/admin/"
STATIC_TYPES = {"console.js": "text/javascript; charset=utf-8",
                "console.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    # No inline script or style anywhere, nothing from elsewhere, never inside a frame.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The callback URL carries the authorization code: never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _asset(name: str) -> str:
    static = resources.files("broker.http.console").joinpath("static")
    return static.joinpath(name).read_text(encoding="utf-8")


def _page(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


def _message(title: str, text: str, status_code: int) -> HTMLResponse:
    body = Template(_asset("message.html")).substitute(title=html.escape(title),
                                                       text=html.escape(text))
    return _page(body, status_code)


def _redirect(url: str, status_code: int = 302) -> RedirectResponse:
    return RedirectResponse(url, status_code=status_code, headers=SECURITY_HEADERS)


def _services(request: Request) -> BrokerServices:
    services: BrokerServices = request.app.state.services
    return services


async def _signed_in(request: Request) -> bool:
    """True when the session holds an ID token the admin API accepts (else it is cleared)."""
    token = request.session.get(SESSION_TOKEN)
    validator = _services(request).admin_tokens
    if not isinstance(token, str) or validator is None:
        return False
    try:
        await validator.validate_subject_token(token)
    except InvalidGrant:
        request.session.clear()  # expired or no longer trusted: sign in again
        return False
    return True


def console_router(settings: BrokerSettings) -> APIRouter:
    """The console's routes; mount only when `settings.admin.console` is set."""
    console = settings.admin.console
    if console is None:
        raise ValueError("admin.console is not configured")
    issuer = (console.issuer or settings.upstream_issuers[0].issuer).rstrip("/")
    secret = console.client_secret.get_secret_value() if console.client_secret else None
    client_kwargs: dict[str, Any] = {
        "scope": console.scopes, "code_challenge_method": "S256",
        "timeout": settings.upstream_http_timeout_ms / 1000,
        # A public client (no secret) authenticates with PKCE alone.
        "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
    }
    oauth = OAuth()
    oauth.register("upstream", client_id=console.client_id, client_secret=secret,
                   server_metadata_url=f"{issuer}/.well-known/openid-configuration",
                   client_kwargs=client_kwargs)
    upstream = oauth.create_client("upstream")
    redirect_uri = f"{settings.issuer}/admin/callback"
    router = APIRouter(prefix="/admin", include_in_schema=False)

    @router.get("/")
    async def console_page(request: Request) -> Response:
        try:
            signed_in = await _signed_in(request)
        except DependencyUnavailable:
            return _message("Temporarily unavailable",
                            "The identity provider cannot be reached; try again shortly.", 503)
        if not signed_in:
            return _redirect(LOGIN_PATH)
        csrf = request.session.get(SESSION_CSRF)
        if not isinstance(csrf, str):
            csrf = request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
        return _page(Template(_asset("console.html")).substitute(csrf=html.escape(csrf)))

    @router.get("/login")
    async def login(request: Request) -> Response:
        # One pending sign-in at a time: each keeps its state in the cookie, which must stay
        # well under the browsers' 4 KB.
        for key in [k for k in request.session if k.startswith("_state_upstream_")]:
            del request.session[key]
        try:
            response: Response = await upstream.authorize_redirect(request, redirect_uri)
        except (httpx.HTTPError, ValueError, KeyError, OAuthError) as exc:
            log.warning("console sign-in cannot start: %s", type(exc).__name__)
            return _message("Sign-in unavailable",
                            f"The identity provider {issuer} cannot be reached.", 503)
        response.headers.update(SECURITY_HEADERS)
        return response

    @router.get("/callback")
    async def callback(request: Request) -> Response:
        try:
            token = await upstream.authorize_access_token(request)
        except (AuthlibBaseError, JoseError) as exc:  # state or nonce mismatch, refused at
            reason = str(getattr(exc, "error", "") or type(exc).__name__)  # the IdP, bad ID token
            log.info("console sign-in failed: %s", reason)
            return _message("Sign-in failed", f"The sign-in did not complete ({reason}).", 400)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("console sign-in failed: %s", type(exc).__name__)
            return _message("Sign-in failed", "The identity provider's answer was not usable.",
                            502)
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or "userinfo" not in token:
            return _message("Sign-in failed", "The identity provider sent no ID token.", 502)
        validator = _services(request).admin_tokens
        try:  # the admin API must accept it too, or the page would be empty and puzzling
            if validator is None:
                raise InvalidGrant()
            await validator.validate_subject_token(id_token)
        except InvalidGrant:
            return _message("Not accepted", "This broker does not accept your sign-in for its "
                            "admin API (is the console's client_id in admin.audiences?).", 403)
        except DependencyUnavailable:
            return _message("Temporarily unavailable", "Try again shortly.", 503)
        request.session.clear()  # a fresh session: nothing from before the sign-in carries over
        request.session[SESSION_TOKEN] = id_token
        request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
        return _redirect(CONSOLE_PATH, 303)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        expected = request.session.get(SESSION_CSRF)
        given = request.headers.get(CSRF_HEADER, "")
        if isinstance(expected, str) and not hmac.compare_digest(expected.encode(),
                                                                 given.encode()):
            raise InvalidToken("The console session needs its CSRF token for this request.")
        request.session.clear()
        return Response(status_code=204, headers=SECURITY_HEADERS)

    @router.get("/signed-out")
    async def signed_out() -> Response:
        return _message("Signed out", "You are signed out of the agent-broker console.", 200)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        media_type = STATIC_TYPES.get(name)
        if media_type is None:  # a fixed list: no path from the URL ever reaches the disk
            return Response(status_code=404, headers=SECURITY_HEADERS)
        return Response(_asset(name), media_type=media_type, headers=SECURITY_HEADERS)

    return router
