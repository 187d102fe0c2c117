"""ClientAssertionVerifier: RFC 7523 private_key_jwt assertions, accepted and refused."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from broker.client_assertion import ClientAssertionVerifier, VerifiedAssertion
from broker.errors import DependencyUnavailable, InvalidClient
from broker.jwks import JwksCache, JwksUnavailable
from tests.support.jose import (
    ED_KEY,
    ES256_KEY,
    NOW,
    Clock,
    CountingFetch,
    SigningKey,
    ec_private,
    jwks_of,
    unsigned_token,
)

TOKEN_ENDPOINT = "https://broker.example/oauth2/token"
BROKER = "https://broker.example"
AGENT = "research-agent"
AGENT_KEY = ES256_KEY  # kid "ec-256"
IMPOSTOR_KEY = SigningKey(ec_private("P-256", "impostor"), "ES256", "ec-256")
KEYS = {AGENT: JwksCache.from_static(jwks_of(AGENT_KEY)),
        "summarizer-agent": JwksCache.from_static(jwks_of(ED_KEY))}


@pytest.fixture
def verifier() -> ClientAssertionVerifier:
    return ClientAssertionVerifier([TOKEN_ENDPOINT, BROKER], clock=Clock(), leeway_seconds=30)


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": AGENT, "sub": AGENT, "aud": TOKEN_ENDPOINT, "iat": NOW, "exp": NOW + 60,
            "jti": "jti-1"}
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def signed(key: SigningKey = AGENT_KEY, headers: dict[str, Any] | None = None,
           **changes: Any) -> Callable[[], str]:
    return lambda: key.sign(claims(**changes), headers=headers)


@pytest.mark.parametrize(("make_assertion", "hint", "expected"), [
    pytest.param(signed(), None, VerifiedAssertion(AGENT, "jti-1", int(NOW) + 90), id="valid"),
    pytest.param(signed(), AGENT, VerifiedAssertion(AGENT, "jti-1", int(NOW) + 90),
                 id="client-id-hint-matches"),
    pytest.param(signed(headers={"typ": "JWT"}), None, None, id="typ-JWT"),
    pytest.param(signed(headers={"typ": "client-authentication+jwt"}), None, None,
                 id="typ-rfc7523bis"),
    pytest.param(signed(aud=["https://elsewhere.example", BROKER]), None, None,
                 id="aud-list-with-issuer"),
    pytest.param(signed(iat=None, exp=NOW + 300), None, None, id="no-iat-lifetime-at-limit"),
    pytest.param(signed(exp=NOW - 29), None, None, id="expired-within-leeway"),
    pytest.param(lambda: ED_KEY.sign(claims(iss="summarizer-agent", sub="summarizer-agent")),
                 None, None, id="eddsa-client"),
])
async def test_accepted_assertions(
    verifier: ClientAssertionVerifier, make_assertion: Callable[[], str], hint: str | None,
    expected: VerifiedAssertion | None,
) -> None:
    verified = await verifier.verify(make_assertion(), hint, KEYS.get)
    assert verified.jti == "jti-1"
    if expected is not None:
        assert verified == expected


REJECTED = [  # (the reason logged at DEBUG, the assertion, the form's client_id)
    pytest.param("iss differs from sub", signed(iss="other-agent"), None, id="iss-not-sub"),
    pytest.param("InvalidAudienceError", signed(aud="https://elsewhere.example"), None,
                 id="wrong-aud"),
    pytest.param("MissingRequiredClaimError", signed(aud=None), None, id="missing-aud"),
    pytest.param("MissingRequiredClaimError", signed(jti=None), None, id="missing-jti"),
    pytest.param("jti is not a string of 1 to 256 characters", signed(jti=""), None,
                 id="empty-jti"),
    pytest.param("jti is not a string of 1 to 256 characters", signed(jti="j" * 257), None,
                 id="jti-too-long"),
    pytest.param("InvalidJTIError", signed(jti=123), None, id="jti-not-a-string"),
    pytest.param("lifetime too long", signed(exp=NOW + 301), None, id="lifetime-too-long"),
    pytest.param("lifetime too long", signed(iat=None, exp=NOW + 301), None,
                 id="lifetime-too-long-without-iat"),
    pytest.param("expired", signed(iat=NOW - 100, exp=NOW - 31), None, id="expired"),
    pytest.param("MissingRequiredClaimError", signed(exp=None), None, id="missing-exp"),
    pytest.param("iat in the future", signed(iat=NOW + 31), None, id="iat-in-future"),
    pytest.param("InvalidSignatureError", signed(IMPOSTOR_KEY), None, id="signed-by-another-key"),
    pytest.param("no key fits", signed(SigningKey(ec_private("P-256", "x"), "ES256", "x")), None,
                 id="unknown-kid"),
    pytest.param("sub differs from the client_id parameter", signed(), "summarizer-agent",
                 id="client-id-hint-mismatch"),
    pytest.param("no private_key_jwt client with that id",
                 signed(iss="secret-agent", sub="secret-agent"), None, id="unknown-client"),
    pytest.param("sub is not a non-empty string", signed(sub=None), None, id="missing-sub"),
    pytest.param("algorithm not allowed",
                 lambda: unsigned_token({"alg": "none", "kid": "ec-256"}, claims()), None,
                 id="alg-none"),
    pytest.param("algorithm not allowed",
                 lambda: unsigned_token({"alg": "HS256", "kid": "ec-256"}, claims(), b"k"), None,
                 id="alg-HS256"),
    pytest.param("typ not accepted", signed(headers={"typ": "at+jwt"}), None,
                 id="access-token-as-assertion"),
    pytest.param("too long", signed(padding="x" * 9000), None, id="oversized"),
    pytest.param("not a compact JWS", lambda: "a.b.c.d.e", None, id="jwe-shaped"),
]


@pytest.mark.parametrize(("reason", "make_assertion", "hint"), REJECTED)
async def test_rejected_assertions_are_invalid_client(
    verifier: ClientAssertionVerifier, caplog: pytest.LogCaptureFixture,
    reason: str, make_assertion: Callable[[], str], hint: str | None,
) -> None:
    assertion = make_assertion()
    caplog.set_level(logging.DEBUG, "broker.client_assertion")
    with pytest.raises(InvalidClient) as caught:
        await verifier.verify(assertion, hint, KEYS.get)
    assert caught.value.description == "Client authentication failed."
    # only this logger: an earlier test's garbage (asyncio's "Task was destroyed") may log too
    assert [r.getMessage() for r in caplog.records if r.name == "broker.client_assertion"] == [
        f"client assertion rejected: {reason}"]
    assert all(part not in caplog.text for part in assertion.split(".") if len(part) > 8)


async def test_unreachable_client_jwks_is_a_dependency_failure(
    verifier: ClientAssertionVerifier,
) -> None:
    fetch = CountingFetch(jwks_of(AGENT_KEY), failure=JwksUnavailable("down"))
    remote = JwksCache(fetch, clock=Clock())
    with pytest.raises(DependencyUnavailable):
        await verifier.verify(AGENT_KEY.sign(claims()), None, {AGENT: remote}.get)


def test_configuration_limits() -> None:
    with pytest.raises(ValueError, match="audiences"):
        ClientAssertionVerifier([])
    with pytest.raises(ValueError, match="leeway"):
        ClientAssertionVerifier([BROKER], leeway_seconds=31)
