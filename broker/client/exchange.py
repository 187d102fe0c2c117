"""One RFC 8693 token exchange at the broker's token endpoint, async and sync.

The request is built and the response read by pure functions; the two public functions only
add the I/O, so the sync and async paths cannot drift apart.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx

from broker.client.dpop import DPoPKey
from broker.client.errors import TokenExchangeError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_TYPES = {"id_token": ID_TOKEN_TYPE, "access_token": ACCESS_TOKEN_TYPE, "jwt": JWT_TYPE}
DEFAULT_TIMEOUT = 10.0

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
AssertionSource = Callable[[str], "str | Awaitable[str]"]
"""Returns a fresh `private_key_jwt` client assertion whose `aud` is the given token endpoint."""

log = logging.getLogger("broker.client")


def token_type_urn(value: str) -> str:
    """`id_token`, `access_token` or `jwt` as their URNs; a URN is returned unchanged."""
    return TOKEN_TYPES.get(value, value)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """How the agent authenticates at the token endpoint (a registered OAuth client)."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    method: AuthMethod | None = None  # None: basic with a secret, private_key_jwt with assertion
    client_assertion: AssertionSource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        method = self.auth_method
        if method == "private_key_jwt" and self.client_assertion is None:
            raise ValueError("private_key_jwt needs a client_assertion callable")
        if method != "private_key_jwt" and not self.client_secret:
            raise ValueError(f"{method} needs a client_secret")

    @property
    def auth_method(self) -> AuthMethod:
        if self.method is not None:
            return self.method
        return "private_key_jwt" if self.client_assertion is not None else "client_secret_basic"


@dataclass(frozen=True, slots=True)
class ExchangedToken:
    """The broker's answer (RFC 8693 §2.2.1). The token is kept out of repr and logs."""

    access_token: str = field(repr=False)
    issued_token_type: str
    token_type: str
    expires_in: int | None
    scope: str | None

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple((self.scope or "").split())

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": self.access_token,
                                "issued_token_type": self.issued_token_type,
                                "token_type": self.token_type}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.scope is not None:
            body["scope"] = self.scope
        return body


def build_request(client: ClientCredentials, *, subject_token: str, subject_token_type: str,
                  resource: str, scope: str | Sequence[str] | None,
                  assertion: str | None,
                  dpop_proof: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of the exchange request (with its DPoP proof, RFC 9449 §5)."""
    form = {"grant_type": GRANT_TYPE, "subject_token": subject_token,
            "subject_token_type": token_type_urn(subject_token_type), "resource": resource}
    if scope is not None:
        form["scope"] = scope if isinstance(scope, str) else " ".join(scope)
    headers = {"Accept": "application/json"}
    if dpop_proof is not None:
        headers["DPoP"] = dpop_proof
    method = client.auth_method
    if method == "client_secret_basic":
        # RFC 6749 §2.3.1: each part is form-urlencoded before the Basic encoding.
        raw = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(raw.encode()).decode()
    elif method == "client_secret_post":
        form |= {"client_id": client.client_id, "client_secret": client.client_secret or ""}
    else:
        form |= {"client_id": client.client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE,
                 "client_assertion": assertion or ""}
    return form, headers


def parse_response(status_code: int, body: bytes, *, dpop: bool = False) -> ExchangedToken:
    """An `ExchangedToken` from a 200, else the broker's RFC 6749 error as TokenExchangeError.
    A DPoP-bound token (`token_type` DPoP) is accepted only when a proof was sent (`dpop`)."""
    try:
        data = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        data = None
    if not isinstance(data, dict):
        raise TokenExchangeError("invalid_response", f"HTTP {status_code}, not a JSON object",
                                 status_code=status_code)
    if status_code != 200:
        error = data.get("error")
        description = data.get("error_description")
        raise TokenExchangeError(error if isinstance(error, str) else "invalid_response",
                                 description if isinstance(description, str) else None,
                                 status_code=status_code)
    token, token_type = data.get("access_token"), data.get("token_type", "Bearer")
    expires_in, scope = data.get("expires_in"), data.get("scope")
    if not isinstance(token, str) or not token:
        raise TokenExchangeError("invalid_response", "no access_token", status_code=200)
    usable = ("bearer", "dpop") if dpop else ("bearer",)
    if not isinstance(token_type, str) or token_type.lower() not in usable:
        raise TokenExchangeError("invalid_response", f"the token type is not {' or '.join(usable)}",
                                 status_code=200)
    if expires_in is not None and (isinstance(expires_in, bool)
                                   or not isinstance(expires_in, int) or expires_in <= 0):
        raise TokenExchangeError("invalid_response", "expires_in is not a positive integer",
                                 status_code=200)
    issued = data.get("issued_token_type", ACCESS_TOKEN_TYPE)
    return ExchangedToken(token, str(issued), token_type, expires_in,
                          scope if isinstance(scope, str) else None)


def _log_granted(result: ExchangedToken, resource: str, client_id: str) -> ExchangedToken:
    log.debug("token exchanged: agent %s, resource %s, scope %r, expires in %s s",
              client_id, resource, result.scope, result.expires_in)
    return result


async def exchange_token(token_endpoint: str, *, subject_token: str, client: ClientCredentials,
                         resource: str, scope: str | Sequence[str] | None = None,
                         subject_token_type: str = ID_TOKEN_TYPE,
                         http: httpx.AsyncClient | None = None,
                         dpop: DPoPKey | None = None) -> ExchangedToken:
    """Exchange `subject_token` (a user's token, or an agent token to re-delegate) for an
    agent token for `resource`. Raises TokenExchangeError with the broker's RFC error.
    Without `http`, a client with a 10 s timeout is opened for this one request. With `dpop`,
    the request carries a proof by that key, and the token is bound to it (RFC 9449)."""
    assertion = None
    if client.client_assertion is not None and client.auth_method == "private_key_jwt":
        made = client.client_assertion(token_endpoint)
        assertion = await made if inspect.isawaitable(made) else made
    form, headers = build_request(client, subject_token=subject_token, resource=resource,
                                  subject_token_type=subject_token_type, scope=scope,
                                  assertion=assertion, dpop_proof=_proof(dpop, token_endpoint))
    try:
        async with _async_client(http) as own:
            response = await own.post(token_endpoint, data=form, headers=headers)
            if _nonce_asked(response, dpop, token_endpoint):  # RFC 9449 §8: once more, with it
                headers["DPoP"] = _proof(dpop, token_endpoint) or ""
                response = await own.post(token_endpoint, data=form, headers=headers)
                _nonce_asked(response, dpop, token_endpoint)  # keep the latest
    except httpx.HTTPError as exc:
        raise TokenExchangeError("connection_error", f"{token_endpoint}: {exc!r}") from None
    return _log_granted(parse_response(response.status_code, response.content,
                                       dpop=dpop is not None), resource, client.client_id)


def exchange_token_sync(token_endpoint: str, *, subject_token: str, client: ClientCredentials,
                        resource: str, scope: str | Sequence[str] | None = None,
                        subject_token_type: str = ID_TOKEN_TYPE,
                        http: httpx.Client | None = None,
                        dpop: DPoPKey | None = None) -> ExchangedToken:
    """`exchange_token` for synchronous code (an async assertion source cannot be used)."""
    assertion = None
    if client.client_assertion is not None and client.auth_method == "private_key_jwt":
        made = client.client_assertion(token_endpoint)
        if inspect.isawaitable(made):
            _discard(made)
            raise TypeError("an async client_assertion source needs the async API")
        assertion = made
    form, headers = build_request(client, subject_token=subject_token, resource=resource,
                                  subject_token_type=subject_token_type, scope=scope,
                                  assertion=assertion, dpop_proof=_proof(dpop, token_endpoint))
    try:
        with _sync_client(http) as own:
            response = own.post(token_endpoint, data=form, headers=headers)
            if _nonce_asked(response, dpop, token_endpoint):
                headers["DPoP"] = _proof(dpop, token_endpoint) or ""
                response = own.post(token_endpoint, data=form, headers=headers)
                _nonce_asked(response, dpop, token_endpoint)
    except httpx.HTTPError as exc:
        raise TokenExchangeError("connection_error", f"{token_endpoint}: {exc!r}") from None
    return _log_granted(parse_response(response.status_code, response.content,
                                       dpop=dpop is not None), resource, client.client_id)


def _proof(dpop: DPoPKey | None, token_endpoint: str) -> str | None:
    """A proof for the token endpoint, with the broker's nonce if the key keeps one."""
    return None if dpop is None else dpop.proof("POST", token_endpoint)


def _nonce_asked(response: httpx.Response, dpop: DPoPKey | None, token_endpoint: str) -> bool:
    """Keep the broker's latest `DPoP-Nonce` with the key, for this exchange's retry and the
    next exchanges (RFC 9449 §8.2); True on a 400 `use_dpop_nonce` that came with one."""
    nonce = response.headers.get("dpop-nonce")
    if dpop is None or not nonce:
        return False
    dpop.remember_nonce(token_endpoint, nonce)
    if response.status_code != 400:
        return False
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return False
    return bool(error == "use_dpop_nonce")


@contextlib.asynccontextmanager
async def _async_client(http: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    if http is not None:
        yield http
        return
    async with httpx.AsyncClient(timeout=DEFAULT_TIMEOUT) as own:
        yield own


@contextlib.contextmanager
def _sync_client(http: httpx.Client | None) -> Iterator[httpx.Client]:
    if http is not None:
        yield http
        return
    with httpx.Client(timeout=DEFAULT_TIMEOUT) as own:
        yield own


def _discard(awaitable: Awaitable[Any]) -> None:
    """Close an un-awaited coroutine so Python does not warn about it."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
