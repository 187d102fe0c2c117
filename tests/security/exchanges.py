"""Small helpers for exchanges at the security broker: a minted token, a client assertion."""

from __future__ import annotations

import time
import uuid

from tests.integration.conftest import Broker
from tests.security.conftest import SIGNER, post_form
from tests.support.jose import SigningKey

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def token_for(broker: Broker, form: dict[str, str],
              headers: dict[str, str] | None = None) -> str:
    """The access token of an exchange that must succeed."""
    response = post_form(broker, "/oauth2/token", form, headers)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def signed_assertion(broker: Broker, *, key: SigningKey = SIGNER,
                     client_id: str = "signer-agent", jti: str | None = None) -> str:
    """A fresh RFC 7523 client assertion (also usable as an RFC 8693 actor token)."""
    now = int(time.time())
    return key.sign({"iss": client_id, "sub": client_id, "aud": f"{broker.url}/oauth2/token",
                     "iat": now, "exp": now + 60, "jti": jti or uuid.uuid4().hex})


def assertion(broker: Broker, **kw: str) -> dict[str, str]:
    """The form fields of private_key_jwt client authentication."""
    return {"client_assertion_type": JWT_BEARER,
            "client_assertion": signed_assertion(broker, **kw)}  # type: ignore[arg-type]
