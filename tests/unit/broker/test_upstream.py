"""UpstreamValidator: discovery, key lookup, and every way a subject token is refused."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.api_jws import PyJWS

from broker.config import UpstreamIssuer
from broker.errors import DependencyUnavailable, InvalidGrant
from broker.upstream import UpstreamValidator, roles_from_claims
from tests.support.jose import (
    ED_KEY,
    ES256_KEY,
    ES384_KEY,
    NOW,
    RSA_KEY,
    RSA_KEY_2,
    Clock,
    SigningKey,
    b64url,
    rsa_private,
    tamper,
    unsigned_token,
)

ISSUER = "https://idp.example/realms/demo"
OTHER_ISSUER = "https://other-idp.example"
ATTACKER_KEY = SigningKey(rsa_private("attacker"), "RS256", "rsa-1")
KEY_HEADERS = "header carries key material or a key URL"


@dataclass
class FakeIdP:
    """An OIDC provider behind httpx.MockTransport, counting requests per path."""

    issuer: str = ISSUER
    keys: list[SigningKey] = field(
        default_factory=lambda: [RSA_KEY, RSA_KEY_2, ES256_KEY, ES384_KEY, ED_KEY])
    stated_issuer: str | None = None
    status: dict[str, int] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    gate: asyncio.Event | None = None

    @property
    def discovery_path(self) -> str:
        return httpx.URL(self.issuer).path.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def jwks_path(self) -> str:
        return httpx.URL(self.issuer).path.rstrip("/") + "/certs"

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if self.gate is not None:
            await self.gate.wait()
        if path in self.status:
            return httpx.Response(self.status[path])
        if path in (self.discovery_path, "/.well-known/oauth-authorization-server/realms/demo"):
            return httpx.Response(200, json={
                "issuer": self.stated_issuer or self.issuer,
                "jwks_uri": str(httpx.URL(self.issuer).copy_with(path=self.jwks_path)),
            })
        if path == self.jwks_path:
            return httpx.Response(200, json={"keys": [key.jwk() for key in self.keys]})
        return httpx.Response(404)


def upstream(issuer: str = ISSUER, **options: Any) -> UpstreamIssuer:
    return UpstreamIssuer(issuer=issuer, audiences=["agent-host", "other-aud"], **options)


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


@pytest.fixture
def other_idp() -> FakeIdP:
    return FakeIdP(issuer=OTHER_ISSUER, keys=[SigningKey(rsa_private("other"), "RS256", "o-1")])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def http(idp: FakeIdP, other_idp: FakeIdP) -> AsyncIterator[httpx.AsyncClient]:
    by_host = {httpx.URL(fake.issuer).host: fake for fake in (idp, other_idp)}

    async def route(request: httpx.Request) -> httpx.Response:
        return await by_host[request.url.host].handle(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as client:
        yield client


@pytest.fixture
def validator(http: httpx.AsyncClient, clock: Clock) -> UpstreamValidator:
    issuers = [upstream(roles_claim="realm_access.roles"), upstream(OTHER_ISSUER)]
    return UpstreamValidator(issuers, http, clock=clock, leeway_seconds=30)


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "sub": "alice", "aud": "agent-host", "iat": NOW, "exp": NOW + 300,
            "realm_access": {"roles": ["viewer", "editor"]}}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def es256_signed_by_p384_key() -> str:
    """ES256 over a P-384 key: PyJWT refuses to mint it, so sign by hand."""
    signing_input = (f"{b64url(json.dumps({'alg': 'ES256', 'kid': 'ec-384'}).encode())}."
                     f"{b64url(json.dumps(claims()).encode())}")
    der = ES384_KEY.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


def sign_unchecked(key: SigningKey, token_claims: dict[str, Any]) -> str:
    """Sign claims PyJWT's encoder would refuse (e.g. a non-string iss)."""
    return PyJWS().encode(json.dumps(token_claims).encode(), key.private, key.alg,
                          headers={"kid": key.kid})


def jwe_shaped() -> str:
    header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "rsa-1"}).encode())
    return f"{header}.{b64url(b'k' * 32)}.{b64url(b'iv')}.{b64url(b'ct')}.{b64url(b'tag')}"


def signed(key: SigningKey = RSA_KEY, headers: dict[str, Any] | None = None,
           **changes: Any) -> Callable[[], str]:
    return lambda: key.sign(claims(**changes), headers=headers)


def unsigned(alg: str, hmac_key: bytes | None = None) -> Callable[[], str]:
    return lambda: unsigned_token({"alg": alg, "kid": "rsa-1"}, claims(), hmac_key=hmac_key)


REJECTED = [  # (the reason logged at DEBUG, the token)
    pytest.param("algorithm not allowed", unsigned("none"), id="alg-none"),
    pytest.param("algorithm not allowed", unsigned("None"), id="alg-None"),
    pytest.param("algorithm not allowed", unsigned("NONE"), id="alg-NONE"),
    pytest.param("algorithm not allowed", unsigned("HS256", RSA_KEY.public_pem()),
                 id="hs256-keyed-with-rsa-public-pem"),
    pytest.param("InvalidSignatureError", lambda: tamper(RSA_KEY.sign(claims()), sub="mallory"),
                 id="tampered-payload"),
    pytest.param("no key fits", signed(SigningKey(rsa_private("attacker"), "RS256", "nope")),
                 id="unknown-kid"),
    pytest.param("more than one key fits", lambda: RSA_KEY.sign(claims(), kid=False),
                 id="kidless-with-two-rsa-keys"),
    # refused outright, not merely ignored (RFC 8725 §3.10; tests/security has the full set)
    pytest.param(KEY_HEADERS, signed(ATTACKER_KEY, {"jku": "https://evil.example/k"}),
                 id="jku-header"),
    pytest.param(KEY_HEADERS, signed(ATTACKER_KEY, {"x5u": "https://evil.example/c"}),
                 id="x5u-header"),
    pytest.param(KEY_HEADERS, signed(ATTACKER_KEY, {"jwk": ATTACKER_KEY.jwk()}),
                 id="jwk-header"),
    pytest.param(KEY_HEADERS, lambda: RSA_KEY.sign(claims(), headers={"jwk": RSA_KEY.jwk()}),
                 id="jwk-header-of-the-real-key"),
    pytest.param("malformed", signed(headers={"crit": ["exp"], "exp": 1}),  # PyJWT refuses first
                 id="crit-header"),
    pytest.param("typ not accepted", signed(headers={"typ": "dpop+jwt"}), id="typ-dpop"),
    pytest.param("typ not accepted", signed(headers={"typ": "logout+jwt"}), id="typ-logout"),
    pytest.param("typ not accepted", signed(headers={"typ": ["JWT"]}), id="typ-not-a-string"),
    pytest.param("InvalidAudienceError", signed(aud="someone-else"), id="wrong-aud"),
    pytest.param("MissingRequiredClaimError", signed(aud=None), id="missing-aud"),
    pytest.param("no key fits", signed(iss=OTHER_ISSUER), id="wrong-iss-for-key"),
    pytest.param("unknown issuer", signed(iss="https://evil.example"), id="unknown-iss"),
    pytest.param("unknown issuer", signed(iss=None), id="missing-iss"),
    pytest.param("unknown issuer", lambda: sign_unchecked(RSA_KEY, claims(iss=["x"])),
                 id="iss-not-a-string"),
    pytest.param("expired", signed(exp=NOW - 31), id="expired-beyond-leeway"),
    pytest.param("nbf in the future", signed(nbf=NOW + 60), id="nbf-in-future"),
    pytest.param("iat in the future", signed(iat=NOW + 60), id="iat-in-future"),
    pytest.param("MissingRequiredClaimError", signed(iat=None), id="missing-iat"),
    pytest.param("MissingRequiredClaimError", signed(exp=None), id="missing-exp"),
    pytest.param("MissingRequiredClaimError", signed(sub=None), id="missing-sub"),
    pytest.param("sub is not a non-empty string", signed(sub=""), id="empty-sub"),
    pytest.param("too long", signed(padding="x" * 17_000), id="oversized"),
    pytest.param("not ASCII", lambda: RSA_KEY.sign(claims()).replace(".", ".é", 1),
                 id="non-ascii"),
    pytest.param("not a compact JWS", jwe_shaped, id="jwe-shaped"),
    pytest.param("no key fits", es256_signed_by_p384_key, id="es256-with-p384-key"),
    pytest.param("not a compact JWS", lambda: "opaque-access-token", id="not-a-jwt"),
]


@pytest.mark.parametrize(("reason", "make_token"), REJECTED)
async def test_rejected_tokens_are_invalid_grant(
    validator: UpstreamValidator, idp: FakeIdP, clock: Clock, caplog: pytest.LogCaptureFixture,
    reason: str, make_token: Callable[[], str],
) -> None:
    await validator.validate_subject_token(RSA_KEY.sign(claims()))  # warm the key set
    clock.now += 10  # so an unknown kid may refetch
    caplog.set_level(logging.DEBUG, "broker.upstream")
    with pytest.raises(InvalidGrant) as caught:
        await validator.validate_subject_token(make_token())
    assert caught.value.description == "The subject token is invalid, expired or not trusted."
    # only this logger: an earlier test's garbage (asyncio's "Task was destroyed") may log too
    assert [r.getMessage() for r in caplog.records if r.name == "broker.upstream"] == [
        f"subject token rejected: {reason}"]
    assert set(idp.calls) <= {idp.discovery_path, idp.jwks_path}  # no jku/x5u was followed


ACCEPTED: dict[str, Callable[[], str]] = {
    "RS256": lambda: RSA_KEY.sign(claims()),
    "PS256": lambda: RSA_KEY.sign(claims(), alg="PS256"),
    "ES256": lambda: ES256_KEY.sign(claims()),
    "EdDSA": lambda: ED_KEY.sign(claims()),
    "typ-JWT": lambda: RSA_KEY.sign(claims(), headers={"typ": "JWT"}),
    "typ-at+jwt": lambda: RSA_KEY.sign(claims(), headers={"typ": "at+jwt"}),
    "typ-application/AT+JWT": lambda: RSA_KEY.sign(claims(), headers={"typ": "application/AT+JWT"}),
    "expired-within-leeway": lambda: RSA_KEY.sign(claims(exp=NOW - 29)),
    "nbf-within-leeway": lambda: RSA_KEY.sign(claims(nbf=NOW + 29)),
    "iss-with-trailing-slash": lambda: RSA_KEY.sign(claims(iss=ISSUER + "/")),
    "aud-list": lambda: RSA_KEY.sign(claims(aud=["x", "other-aud"])),
}


@pytest.mark.parametrize("make_token", ACCEPTED.values(), ids=ACCEPTED.keys())
async def test_accepted_tokens(validator: UpstreamValidator, make_token: Callable[[], str]) -> None:
    identity = await validator.validate_subject_token(make_token())
    assert identity.subject == "alice"
    assert identity.issuer == ISSUER


async def test_identity_carries_claims_roles_and_expiry(validator: UpstreamValidator) -> None:
    identity = await validator.validate_subject_token(RSA_KEY.sign(claims(email="a@x.example")))
    assert identity.roles == ("viewer", "editor")
    assert identity.expires_at == int(NOW + 300)
    assert identity.claims["email"] == "a@x.example"


async def test_rejection_is_logged_by_reason_never_with_the_token(
    validator: UpstreamValidator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "broker")
    token = RSA_KEY.sign(claims(exp=NOW - 100))
    with pytest.raises(InvalidGrant):
        await validator.validate_subject_token(token)
    assert "subject token rejected: expired" in caplog.text
    assert all(part not in caplog.text for part in token.split("."))


async def test_discovery_issuer_mismatch_is_a_dependency_failure(
    validator: UpstreamValidator, idp: FakeIdP
) -> None:
    idp.stated_issuer = "https://impostor.example"
    with pytest.raises(DependencyUnavailable):
        await validator.validate_subject_token(RSA_KEY.sign(claims()))
    assert idp.calls[idp.jwks_path] == 0


@pytest.mark.parametrize("failing", ["discovery", "jwks"])
async def test_unreachable_endpoint_is_dependency_unavailable(
    validator: UpstreamValidator, idp: FakeIdP, failing: str
) -> None:
    idp.status[idp.discovery_path if failing == "discovery" else idp.jwks_path] = 500
    with pytest.raises(DependencyUnavailable):
        await validator.validate_subject_token(RSA_KEY.sign(claims()))


async def test_discovery_falls_back_to_rfc8414_on_404(
    validator: UpstreamValidator, idp: FakeIdP
) -> None:
    idp.status[idp.discovery_path] = 404
    await validator.validate_subject_token(RSA_KEY.sign(claims()))
    assert idp.calls["/.well-known/oauth-authorization-server/realms/demo"] == 1


async def test_configured_jwks_uri_skips_discovery(
    http: httpx.AsyncClient, idp: FakeIdP, clock: Clock
) -> None:
    config = upstream(jwks_uri=f"{ISSUER}/certs", algorithms=["ES256"])
    validator = UpstreamValidator([config], http, clock=clock)
    await validator.validate_subject_token(ES256_KEY.sign(claims()))
    with pytest.raises(InvalidGrant):  # RS256 is outside this issuer's allowlist
        await validator.validate_subject_token(RSA_KEY.sign(claims()))
    assert idp.calls == Counter({idp.jwks_path: 1})


async def test_stale_keys_keep_serving_while_the_jwks_endpoint_fails(
    validator: UpstreamValidator, idp: FakeIdP, clock: Clock
) -> None:
    await validator.validate_subject_token(RSA_KEY.sign(claims()))
    idp.status[idp.jwks_path] = 500
    clock.now += 600
    identity = await validator.validate_subject_token(RSA_KEY.sign(claims(exp=clock.now + 60,
                                                                          iat=clock.now)))
    assert identity.subject == "alice"
    assert idp.calls[idp.jwks_path] == 2


async def test_concurrent_first_callers_share_one_discovery_and_one_jwks_fetch(
    validator: UpstreamValidator, idp: FakeIdP
) -> None:
    idp.gate = asyncio.Event()
    callers = [asyncio.create_task(validator.validate_subject_token(RSA_KEY.sign(claims())))
               for _ in range(20)]
    await asyncio.sleep(0)
    idp.gate.set()
    identities = await asyncio.gather(*callers)
    assert {identity.subject for identity in identities} == {"alice"}
    assert idp.calls == Counter({idp.discovery_path: 1, idp.jwks_path: 1})


def test_leeway_above_30_seconds_is_refused(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="leeway"):
        UpstreamValidator([upstream()], http, leeway_seconds=31)


@pytest.mark.parametrize(("token_claims", "path", "roles"), [
    ({"realm_access": {"roles": ["a", "b"]}}, "realm_access.roles", ("a", "b")),
    ({"roles": "admin"}, "roles", ("admin",)),
    ({"roles": ["a", 1]}, "roles", ()),
    ({"roles": {"a": 1}}, "roles", ()),
    ({}, "roles", ()),
    ({"realm_access": "x"}, "realm_access.roles", ()),
    ({"https://example.com/roles": ["ns"]}, "https://example.com/roles", ("ns",)),
], ids=["dotted", "string", "list-with-non-string", "object", "missing", "path-through-string",
        "namespaced-claim-with-dots"])
def test_roles_from_claims(token_claims: dict[str, Any], path: str, roles: tuple[str, ...]) -> None:
    assert roles_from_claims(token_claims, path) == roles


async def test_each_issuer_uses_its_own_keys(
    validator: UpstreamValidator, other_idp: FakeIdP
) -> None:
    other_key = other_idp.keys[0]
    identity = await validator.validate_subject_token(other_key.sign(claims(iss=OTHER_ISSUER)))
    assert (identity.issuer, identity.roles) == (OTHER_ISSUER, ())
    with pytest.raises(InvalidGrant):  # signed by the first issuer's key, claiming the second
        await validator.validate_subject_token(RSA_KEY.sign(claims(iss=OTHER_ISSUER)))
