"""Sign a user in at the dev IdP (oidc-provider-mock) over HTTP, as a browser and a client would.

The authorization-code flow without a browser: POST /oauth2/authorize choosing the user (the
mock's login form has one field, `sub`), read `code` from the 302's Location (the loopback
redirect_uri is never served), then POST /oauth2/token. `agent-broker demo` signs its users
in this way, and the tests do too (tests/support/oidc.py), so both exercise the same flow.

What the mock does, which is why this works at all: any client_id is accepted with any secret
and any redirect_uri; any `sub` typed at the authorize step is a user (PUT /users/<sub> sets
their claims); the ID token's `aud` is the client_id, so the client_id chooses the audience
(`agent-host` for subject tokens, the console's client_id for admin tokens). Its access token
is opaque: the ID token is the subject token. This is for the dev IdP only: a real IdP asks
the human, not the form field.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT_URI = "http://127.0.0.1:9/callback"
"""Never served: the flow stops at the 302 that points here and reads the code from it."""
CLIENT_SECRET = "any-secret"  # the mock accepts any secret for any client
TIMEOUT_S = 10.0


class IdpLoginError(RuntimeError):
    """The dev IdP did not log the user in (unreachable, or an unexpected answer)."""


@dataclass(frozen=True)
class OidcTokens:
    id_token: str
    access_token: str
    expires_in: int


@dataclass(frozen=True)
class _Attempt:
    """One login's request values (the state is checked on the way back)."""

    params: dict[str, str]
    state: str

    @classmethod
    def new(cls, client_id: str, scope: str) -> _Attempt:
        state = secrets.token_urlsafe(16)
        params = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "response_type": "code",
                  "scope": scope, "state": state, "nonce": secrets.token_urlsafe(16)}
        return cls(params, state)

    def code(self, response: httpx.Response) -> str:
        location = response.headers.get("location", "")
        if response.status_code != 302 or not location.startswith(REDIRECT_URI):
            raise IdpLoginError(f"authorize failed: {response.status_code} "
                                f"{location or response.text[:500]}")
        query = parse_qs(urlsplit(location).query)
        if query.get("state") != [self.state] or "code" not in query:
            raise IdpLoginError(f"authorize redirect without code or with a wrong state: {query}")
        return str(query["code"][0])

    def token_form(self, code: str) -> dict[str, str]:
        return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}


def _tokens(response: httpx.Response) -> OidcTokens:
    if response.status_code != 200:
        raise IdpLoginError(f"token request failed: {response.status_code} "
                            f"{response.text[:500]}")
    body = response.json()
    return OidcTokens(id_token=body["id_token"], access_token=body["access_token"],
                      expires_in=int(body["expires_in"]))


def _client() -> httpx.Client:
    # trust_env=False: loopback only, never through an environment proxy
    return httpx.Client(timeout=TIMEOUT_S, trust_env=False, follow_redirects=False)


def set_user_claims(issuer: str, sub: str, claims: dict[str, Any]) -> None:
    """Replace the claims of user `sub` at the provider (PUT {issuer}/users/{sub})."""
    with _client() as http:
        response = http.put(f"{issuer}/users/{sub}", json=claims)
    if response.status_code != 204:
        raise IdpLoginError(f"setting claims of {sub!r} failed: {response.status_code} "
                            f"{response.text[:500]}")


def oidc_login(issuer: str, sub: str, *, client_id: str = "agent-host",
               claims: dict[str, Any] | None = None,
               scope: str = "openid profile email") -> OidcTokens:
    """Log `sub` in at `issuer` for `client_id` (the ID token's audience); sync."""
    if claims is not None:
        set_user_claims(issuer, sub, claims)
    attempt = _Attempt.new(client_id, scope)
    with _client() as http:
        authorize = http.post(f"{issuer}/oauth2/authorize", params=attempt.params,
                              data={"sub": sub})
        token = http.post(f"{issuer}/oauth2/token", data=attempt.token_form(
            attempt.code(authorize)), auth=(client_id, CLIENT_SECRET))
    return _tokens(token)


async def oidc_login_async(issuer: str, sub: str, *, client_id: str = "agent-host",
                           scope: str = "openid profile email",
                           http: httpx.AsyncClient | None = None) -> OidcTokens:
    """`oidc_login` for async code (the user's claims must already be set)."""
    attempt = _Attempt.new(client_id, scope)
    own = http is None
    client = http or httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False)
    try:
        # follow_redirects per request: a shared client may follow them by default
        authorize = await client.post(f"{issuer}/oauth2/authorize", params=attempt.params,
                                      data={"sub": sub}, follow_redirects=False)
        token = await client.post(f"{issuer}/oauth2/token", data=attempt.token_form(
            attempt.code(authorize)), auth=(client_id, CLIENT_SECRET))
    finally:
        if own:
            await client.aclose()
    return _tokens(token)
