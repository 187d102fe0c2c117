"""Real ID tokens from the real OIDC provider that tests start (oidc-provider-mock 0.3.4).

`oidc_login` (from `broker.dev.idp_login`) performs the authorization-code flow over HTTP as a
browser and a client would: POST /oauth2/authorize choosing the user, read `code` from the 302
Location (the loopback redirect_uri is never served), then POST /oauth2/token.

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

# The flow itself lives in the product (`agent-broker demo` signs users in the same way).
from broker.dev.idp_login import REDIRECT_URI, OidcTokens, oidc_login, set_user_claims

__all__ = ["REDIRECT_URI", "OidcTokens", "oidc_login", "set_user_claims"]
