"""OAuth client authentication at the token and introspection endpoints.

Methods (RFC 6749 §2.3, RFC 7523 §2.2): `client_secret_basic`, `client_secret_post`,
`private_key_jwt`. A request may use exactly one. Each client is registered with one method
and may authenticate only with it. Unknown clients and wrong secrets cost the same scrypt
work and get the same `invalid_client`, so the endpoint does not reveal which clients exist.
`private_key_jwt` assertions are single-use: their `jti` is recorded in Redis until they expire.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

import anyio.to_thread

from broker.client_assertion import ClientAssertionVerifier
from broker.config import ClientSecretAuth, PrivateKeyJwtAuth
from broker.errors import (
    DependencyUnavailable,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    TemporarilyUnavailable,
)
from broker.jwks import JwksCache
from broker.ports import ReplayCache
from broker.secrets import SecretVerifier, hash_secret

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


@functools.cache
def _dummy_hash() -> str:
    """Compared against when the client is unknown, so that costs what a real check costs."""
    return hash_secret("no-such-client: constant-cost comparison")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Registration:
    client_id: str
    auth: ClientSecretAuth | PrivateKeyJwtAuth


@dataclass(frozen=True, slots=True)
class Presented:
    method: str
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def presented_credentials(headers: Mapping[str, str], form: Mapping[str, str]) -> Presented:
    """Which method the request used, and its credentials; exactly one method allowed."""
    found: list[Presented] = []
    header = headers.get("authorization")
    if header is not None and header[:6].lower() == "basic ":
        found.append(parse_basic(header[6:].strip()))
    if "client_secret" in form:
        found.append(Presented("client_secret_post", form.get("client_id", ""),
                               secret=form["client_secret"]))
    if "client_assertion" in form or "client_assertion_type" in form:
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise InvalidRequest("client_assertion_type must be jwt-bearer, with an assertion.")
        found.append(Presented("private_key_jwt", form.get("client_id", ""),
                               assertion=form["client_assertion"]))
    if len(found) > 1:
        raise InvalidRequest("Use exactly one client authentication method.")
    if not found:
        raise InvalidClient("Client authentication is required.")
    presented = found[0]
    body_id = form.get("client_id")
    if presented.method == "client_secret_basic" and body_id and body_id != presented.client_id:
        raise InvalidClient()
    return presented


def parse_basic(encoded: str) -> Presented:
    """HTTP Basic credentials (after `Basic `); InvalidClient if malformed."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("Malformed Basic credentials.")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return Presented("client_secret_basic", unquote_plus(client_id), secret=unquote_plus(secret))


class ClientAuthenticator:
    """Authenticates against one registry (the agents, or the resources that introspect)."""

    def __init__(self, registrations: Mapping[str, Registration], *,
                 secrets: SecretVerifier, assertions: ClientAssertionVerifier,
                 replay: ReplayCache, key_sets: Mapping[str, JwksCache]) -> None:
        self._registry, self._secrets = registrations, secrets
        self._assertions, self._replay, self._key_sets = assertions, replay, key_sets

    async def authenticate(self, headers: Mapping[str, str], form: Mapping[str, str]) -> str:
        """Return the authenticated client_id or raise InvalidClient."""
        presented = presented_credentials(headers, form)
        if presented.method == "private_key_jwt":
            return await self._by_assertion(presented)
        registration = self._registry.get(presented.client_id)
        dummy = stored = _dummy_hash()
        if registration is not None and isinstance(registration.auth, ClientSecretAuth):
            stored = registration.auth.secret_hash
        ok = await self._check_secret(presented.client_id, stored, presented.secret or "")
        if not ok or registration is None or stored is dummy:
            log.info("client authentication failed (%s)", presented.method)
            raise InvalidClient()
        if registration.auth.method != presented.method:
            log.info("client %s used %s, registered for %s", registration.client_id,
                     presented.method, registration.auth.method)
            raise InvalidClient()
        return registration.client_id

    def authenticate_proven(self, headers: Mapping[str, str],
                            form: Mapping[str, str]) -> str | None:
        """The client id if the request presents, by its registered method, a secret this
        process has already verified (no scrypt, no I/O); None: `authenticate` must decide.

        Never raises: a request it cannot vouch for goes the full way, errors included."""
        try:
            presented = presented_credentials(headers, form)
        except (InvalidClient, InvalidRequest):
            return None
        registration = self._registry.get(presented.client_id)
        if (registration is None or not isinstance(registration.auth, ClientSecretAuth)
                or registration.auth.method != presented.method):
            return None
        known = self._secrets.check_cached(presented.client_id, registration.auth.secret_hash,
                                           presented.secret or "")
        return registration.client_id if known else None

    async def _check_secret(self, client_id: str, stored: str, secret: str) -> bool:
        cached = self._secrets.check_cached(client_id, stored, secret)
        if cached:
            return True
        return await anyio.to_thread.run_sync(self._secrets.check, client_id, stored, secret)

    async def verify_actor(self, client_id: str, actor_token: str) -> None:
        """RFC 8693 `actor_token`: here it must prove the authenticated client itself, as a
        single-use JWT signed with that client's registered key (the `act` claim always
        names the authenticated client, so any other actor would be a claim we cannot check)."""
        registration = self._registry.get(client_id)
        if registration is None or not isinstance(registration.auth, PrivateKeyJwtAuth):
            raise InvalidRequest("actor_token is accepted only from private_key_jwt clients.")
        try:
            actor = await self._by_assertion(Presented("private_key_jwt", client_id,
                                                       assertion=actor_token))
        except InvalidClient:
            raise InvalidGrant("The actor token is invalid.") from None
        if actor != client_id:
            raise InvalidGrant("The actor token must identify the authenticated client.")

    async def _by_assertion(self, presented: Presented) -> str:
        def keys_for(client_id: str) -> JwksCache | None:
            registration = self._registry.get(client_id)
            if registration is None or not isinstance(registration.auth, PrivateKeyJwtAuth):
                return None
            return self._key_sets.get(client_id)

        try:
            verified = await self._assertions.verify(
                presented.assertion or "", presented.client_id or None, keys_for,
            )
            first = await self._replay.first_use(
                f"jti:{verified.client_id}:{verified.jti}", verified.expires_at,
            )
        except DependencyUnavailable:
            raise TemporarilyUnavailable() from None
        if not first:
            log.warning("client %s replayed a client assertion", verified.client_id)
            raise InvalidClient()
        return verified.client_id
