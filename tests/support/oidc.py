"""Real ID tokens from the real OIDC provider that tests start (oidc-provider-mock 0.3.4).

`oidc_login` performs the authorization-code flow over HTTP as a browser and a client would:
POST /oauth2/authorize choosing the user, read `code` from the 302 Location (the loopback
redirect_uri is never served), then POST /oauth2/token.

What the provider does (read from its source and checked against a running instance):
- Clients need no registration: any client_id is accepted with any secret, any redirect_uri and
  any token-endpoint auth method (client_secret_basic is used here).
- Users need no registration either: the `sub` typed at the authorize step is the user. A user
  never set with PUT /users/{sub} gets the claims `{"email": sub}`. PUT replaces all claims.
- ID token: JWS header `{"typ": "JWT", "alg": "RS256"}` with **no `kid`** (the JWKS at
  `{issuer}/jwks` holds one RSA key, which has a kid: a verifier must fall back to the only key,
  or to trying each key, when the header has none). Claims: `iss` (== issuer,
  "http://127.0.0.1:<port>"), `sub`, `aud` as a **list** (`["<client_id>"]`), `iat`, `exp`
  (iat + 3600), `auth_time`, `nonce` (echoed), `at_hash`, plus every custom claim set for the
  user (e.g. `roles`, nested objects too). Standard profile/email claims (`name`, `email`...)
  appear only when the matching scope (`profile`, `email`) was requested; non-standard claims
  always appear.
- Access token: **opaque** (a random ~42-character string, not a JWT), `expires_in` 3600; it is
  only good at the provider's /userinfo. Use the ID token as the subject token
  (`urn:ietf:params:oauth:token-type:id_token`).
- All state is in memory: restarting the provider forgets users and rotates the signing key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

# Never served: the flow stops at the 302 that points here and reads the code from it.
REDIRECT_URI = "http://127.0.0.1:9/callback"


@dataclass(frozen=True)
class OidcTokens:
    id_token: str
    access_token: str
    expires_in: int


def _client() -> httpx.Client:
    # trust_env=False: loopback only, never through an environment proxy
    return httpx.Client(timeout=10.0, trust_env=False, follow_redirects=False)


def set_user_claims(issuer: str, sub: str, claims: dict[str, Any]) -> None:
    """Replace the claims of user `sub` at the provider (PUT {issuer}/users/{sub})."""
    with _client() as http:
        response = http.put(f"{issuer}/users/{sub}", json=claims)
    if response.status_code != 204:
        raise RuntimeError(
            f"setting claims of {sub!r} failed: {response.status_code} {response.text[:500]}"
        )


def oidc_login(
    issuer: str,
    sub: str,
    *,
    client_id: str = "agent-host",
    claims: dict[str, Any] | None = None,
    scope: str = "openid profile email",
) -> OidcTokens:
    """Log `sub` in at `issuer` for `client_id` with the authorization-code flow."""
    if claims is not None:
        set_user_claims(issuer, sub, claims)
    state = secrets.token_urlsafe(16)
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": scope,
        "state": state,
        "nonce": secrets.token_urlsafe(16),
    }
    with _client() as http:
        authorize = http.post(f"{issuer}/oauth2/authorize", params=params, data={"sub": sub})
        location = authorize.headers.get("location", "")
        if authorize.status_code != 302 or not location.startswith(REDIRECT_URI):
            raise RuntimeError(
                f"authorize failed: {authorize.status_code} {location or authorize.text[:500]}"
            )
        query = parse_qs(urlsplit(location).query)
        if query.get("state") != [state] or "code" not in query:
            raise RuntimeError(f"authorize redirect without code or with a wrong state: {query}")
        token = http.post(
            f"{issuer}/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT_URI,
            },
            auth=(client_id, "any-secret"),  # the provider accepts any secret
        )
    if token.status_code != 200:
        raise RuntimeError(f"token request failed: {token.status_code} {token.text[:500]}")
    body = token.json()
    return OidcTokens(
        id_token=body["id_token"],
        access_token=body["access_token"],
        expires_in=int(body["expires_in"]),
    )
