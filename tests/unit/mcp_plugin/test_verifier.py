"""BrokerTokenVerifier: what it accepts, everything it refuses, and how it says so."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from mcp_plugin import BrokerTokenVerifier, RevocationUnavailable, StaticRevocations, TokenFacts
from mcp_plugin.claims import REQUIRED_CLAIMS
from mcp_plugin.testing import FakeBroker, TestKeyPair
from tests.unit.mcp_plugin.conftest import ISSUER, NOW, RESOURCE


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _alg_none(broker: FakeBroker) -> str:
    header = {"alg": "none", "typ": "at+jwt", "kid": broker.tokens.keys[0].kid}
    return _compact(header, broker.tokens.claims())


def _hs256_with_public_key(broker: FakeBroker) -> str:
    """The classic confusion: HMAC keyed with the (public) verification key."""
    key = broker.tokens.keys[0]
    secret = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}
    unsigned = _compact(header, broker.tokens.claims()).rsplit(".", 1)[0]
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{_b64(mac)}"


def _tampered(broker: FakeBroker) -> str:
    head, _, signature = broker.tokens.mint(scopes=["crm:read"]).split(".")
    body = _b64(json.dumps(broker.tokens.claims(scopes=["crm:read", "crm:delete"])).encode())
    return f"{head}.{body}.{signature}"


def _unknown_kid(broker: FakeBroker) -> str:
    return broker.tokens.mint(key=TestKeyPair.generate(kid="not-published"))


def _other_issuer(broker: FakeBroker) -> str:
    return broker.tokens.mint(claims={"iss": "http://evil.test"})


def _es256_header_on_eddsa_key(broker: FakeBroker) -> str:
    good = broker.tokens.mint()
    _, body, signature = good.split(".")
    key = broker.tokens.keys[0]
    head = _b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}).encode())
    return f"{head}.{body}.{signature}"


BAD_TOKENS: list[Any] = [
    pytest.param(lambda b: "", id="empty"),
    pytest.param(lambda b: "not-a-jwt", id="garbage"),
    pytest.param(lambda b: "a.b.c", id="undecodable"),
    pytest.param(lambda b: b.tokens.mint() + "x" * 9000, id="oversized"),
    pytest.param(_alg_none, id="alg-none"),
    pytest.param(_hs256_with_public_key, id="hs256-with-public-key"),
    pytest.param(_es256_header_on_eddsa_key, id="alg-key-mismatch"),
    pytest.param(_tampered, id="tampered-payload"),
    pytest.param(_unknown_kid, id="unknown-kid"),
    pytest.param(lambda b: b.tokens.mint(headers={"kid": None}), id="no-kid"),
    pytest.param(lambda b: b.tokens.mint(headers={"typ": "JWT"}), id="typ-jwt"),
    pytest.param(lambda b: b.tokens.mint(headers={"typ": None}), id="no-typ"),
    pytest.param(lambda b: b.tokens.mint(headers={"jku": "http://evil.test/jwks"}), id="jku"),
    pytest.param(lambda b: b.tokens.mint(headers={"x5u": "http://evil.test/c"}), id="x5u"),
    pytest.param(lambda b: b.tokens.mint(headers={"jwk": {"kty": "OKP"}}), id="jwk"),
    pytest.param(lambda b: b.tokens.mint(headers={"crit": ["exp"]}), id="crit"),
    pytest.param(lambda b: b.tokens.mint(audience="http://127.0.0.1:9999/mcp"), id="wrong-aud"),
    pytest.param(lambda b: b.tokens.mint(claims={"aud": [RESOURCE, "http://other/mcp"]}),
                 id="extra-aud"),
    pytest.param(_other_issuer, id="wrong-iss"),
    pytest.param(lambda b: b.tokens.mint(issued_at=NOW - 400, ttl=300), id="expired"),
    pytest.param(lambda b: b.tokens.mint(claims={"nbf": NOW + 120}), id="nbf-future"),
    pytest.param(lambda b: b.tokens.mint(issued_at=NOW + 120), id="iat-future"),
    pytest.param(lambda b: b.tokens.mint(actors=["a", "b"], client_id="b"), id="act-mismatch"),
    *[
        pytest.param(lambda b, c=claim: b.tokens.mint(claims={c: None}), id=f"missing-{claim}")
        for claim in REQUIRED_CLAIMS
    ],
]


@pytest.mark.parametrize("make_token", BAD_TOKENS)
async def test_bad_tokens_are_refused(
    verifier: BrokerTokenVerifier, broker: FakeBroker, make_token: Callable[[FakeBroker], str]
) -> None:
    assert await verifier.verify_token(make_token(broker)) is None


async def test_good_token_gives_access_token_with_claims(
    verifier: BrokerTokenVerifier, broker: FakeBroker
) -> None:
    token = broker.tokens.mint(sub="alice", scopes=["crm:read", "email:send"], sid="s1")
    access = await verifier.verify_token(token)
    assert access is not None
    assert access.client_id == "research-agent"
    assert access.scopes == ["crm:read", "email:send"]
    assert access.expires_at == NOW + 300
    assert access.resource == RESOURCE
    assert access.subject == "alice"
    assert access.claims["sid"] == "s1"
    assert access.claims["act"] == {"sub": "research-agent"}


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
async def test_typ_is_case_insensitive_with_optional_prefix(
    verifier: BrokerTokenVerifier, broker: FakeBroker, typ: str
) -> None:
    assert await verifier.verify_token(broker.tokens.mint(headers={"typ": typ})) is not None


async def test_es256_keys_work(monotonic: object) -> None:
    from mcp_plugin import BrokerKeys

    broker = FakeBroker(ISSUER, keys=[TestKeyPair.generate("ES256")], audience=RESOURCE)
    keys = BrokerKeys(ISSUER, http_client=broker.http_client())
    verifier = BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, keys=keys)
    assert await verifier.verify_token(broker.tokens.mint()) is not None


@pytest.mark.parametrize(
    ("now", "accepted"),
    [
        pytest.param(NOW + 300 + 29, True, id="exp-within-leeway"),
        pytest.param(NOW + 300 + 31, False, id="exp-beyond-leeway"),
        pytest.param(NOW - 29, True, id="nbf-within-leeway"),
        pytest.param(NOW - 31, False, id="nbf-beyond-leeway"),
    ],
)
async def test_leeway_is_30_seconds(
    make_verifier: Callable[..., BrokerTokenVerifier], broker: FakeBroker, now: float,
    accepted: bool,
) -> None:
    verifier = make_verifier(now=now)
    access = await verifier.verify_token(broker.tokens.mint())
    assert (access is not None) == accepted


def test_leeway_above_30_seconds_is_refused() -> None:
    with pytest.raises(ValueError, match="leeway"):
        BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE, leeway=31)


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda r, c: r.revoke_token(c["jti"]), id="jti"),
        pytest.param(lambda r, c: r.revoke_session(c["sid"]), id="session"),
        pytest.param(lambda r, c: r.revoke_user("alice", issued_before=NOW), id="user"),
        pytest.param(lambda r, c: r.revoke_agent("research-agent", issued_before=NOW), id="agent"),
        pytest.param(lambda r, c: r.revoke_user_agent("alice", "research-agent",
                                                      issued_before=NOW), id="user-agent"),
    ],
)
async def test_revoked_tokens_are_refused(
    verifier: BrokerTokenVerifier, broker: FakeBroker, revocations: StaticRevocations,
    revoke: Callable[[StaticRevocations, dict[str, Any]], None],
) -> None:
    claims = broker.tokens.claims(sub="alice")
    token = broker.tokens.keys[0].sign(claims)
    assert await verifier.verify_token(token) is not None
    revoke(revocations, claims)
    assert await verifier.verify_token(token) is None


async def test_revocation_view_is_consulted_on_every_request(broker: FakeBroker) -> None:
    from mcp_plugin import BrokerKeys

    seen: list[TokenFacts] = []

    class Recording:
        def is_revoked(self, token: TokenFacts) -> bool:
            seen.append(token)
            return False

    keys = BrokerKeys(ISSUER, http_client=broker.http_client())
    verifier = BrokerTokenVerifier(
        broker=ISSUER, resource=RESOURCE, keys=keys, revocations=Recording(), clock=lambda: NOW
    )
    token = broker.tokens.mint(actors=["summarizer", "research-agent"])
    for _ in range(3):
        assert await verifier.verify_token(token) is not None
    assert len(seen) == 3
    assert seen[0].actors == ("summarizer", "research-agent")
    assert seen[0].client_id == "summarizer"


@pytest.mark.parametrize(
    ("error", "level"),
    [
        pytest.param(RevocationUnavailable("feed down"), logging.WARNING, id="unavailable"),
        pytest.param(RuntimeError("boom"), logging.WARNING, id="unexpected"),
    ],
)
async def test_revocation_trouble_fails_closed_without_raising(
    broker: FakeBroker, caplog: pytest.LogCaptureFixture, error: Exception, level: int
) -> None:
    from mcp_plugin import BrokerKeys

    class Broken:
        def is_revoked(self, token: TokenFacts) -> bool:
            raise error

    keys = BrokerKeys(ISSUER, http_client=broker.http_client())
    verifier = BrokerTokenVerifier(
        broker=ISSUER, resource=RESOURCE, keys=keys, revocations=Broken(), clock=lambda: NOW
    )
    with caplog.at_level(logging.DEBUG, logger="mcp_plugin"):
        assert await verifier.verify_token(broker.tokens.mint()) is None
    assert any(r.levelno == level for r in caplog.records)


async def test_rejections_are_logged_with_a_reason_but_never_the_token(
    verifier: BrokerTokenVerifier, broker: FakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    token = broker.tokens.mint(audience="http://127.0.0.1:9999/mcp")
    with caplog.at_level(logging.DEBUG, logger="mcp_plugin"):
        assert await verifier.verify_token(token) is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("audience" in m for m in messages)
    assert all(token not in m and token.split(".")[1] not in m for m in messages)
    assert all(r.levelno <= logging.INFO for r in caplog.records)


async def test_managed_view_is_started_once_before_the_first_check(broker: FakeBroker) -> None:
    from mcp_plugin import BrokerKeys, ManagedRevocationView

    class Feed:
        def __init__(self) -> None:
            self.starts = 0
            self.fail = True

        async def start(self) -> None:
            self.starts += 1
            if self.fail:
                raise ConnectionError("redis down")

        async def aclose(self) -> None:
            pass

        def is_revoked(self, token: TokenFacts) -> bool:
            assert self.starts and not self.fail
            return False

    feed = Feed()
    assert isinstance(feed, ManagedRevocationView)
    keys = BrokerKeys(ISSUER, http_client=broker.http_client())
    verifier = BrokerTokenVerifier(
        broker=ISSUER, resource=RESOURCE, keys=keys, revocations=feed, clock=lambda: NOW
    )
    token = broker.tokens.mint()
    assert await verifier.verify_token(token) is None  # the feed could not start: refuse
    feed.fail = False
    assert await verifier.verify_token(token) is not None
    assert await verifier.verify_token(token) is not None
    assert feed.starts == 2


# -- the verified-token cache (issue 6: no signature check twice for the same bytes) --------


async def test_a_token_seen_before_is_not_verified_again(
    verifier: BrokerTokenVerifier, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    token = broker.tokens.mint()
    for _ in range(3):
        assert await verifier.verify_token(token) is not None
    assert len(decoded) == 1
    assert await verifier.verify_token(broker.tokens.mint()) is not None  # another token
    assert len(decoded) == 2


async def test_a_remembered_token_still_expires(
    make_verifier: Callable[..., BrokerTokenVerifier], broker: FakeBroker
) -> None:
    now = [float(NOW)]
    verifier = make_verifier()
    verifier._clock = lambda: now[0]
    token = broker.tokens.mint()  # exp NOW + 300
    assert await verifier.verify_token(token) is not None
    now[0] = NOW + 300 + 31
    assert await verifier.verify_token(token) is None
    now[0] = NOW
    assert await verifier.verify_token(token) is not None  # verified afresh, not remembered


async def test_a_remembered_token_dies_with_its_key(
    broker: FakeBroker, make_verifier: Callable[..., BrokerTokenVerifier], monotonic: Any
) -> None:
    verifier = make_verifier()
    token = broker.tokens.mint()
    assert await verifier.verify_token(token) is not None
    broker.tokens.keys[:] = [TestKeyPair.generate(kid="after-rotation")]
    monotonic.now += 301  # the key set is stale: the next lookup refetches it
    assert await verifier.verify_token(token) is None


async def test_the_cache_is_bounded_and_can_be_off(
    make_verifier: Callable[..., BrokerTokenVerifier], broker: FakeBroker
) -> None:
    bounded = make_verifier(cache_size=2)
    tokens = [broker.tokens.mint() for _ in range(3)]
    for token in tokens:
        assert await bounded.verify_token(token) is not None
    assert list(bounded._verified) == tokens[1:]  # the oldest went first
    off = make_verifier(cache_size=0)
    assert await off.verify_token(tokens[0]) is not None
    assert off._verified == {}
    with pytest.raises(ValueError, match="cache_size"):
        make_verifier(cache_size=-1)


async def test_expired_tokens_leave_the_cache_as_new_ones_come(
    make_verifier: Callable[..., BrokerTokenVerifier], broker: FakeBroker
) -> None:
    """Tokens never presented again must not stay until the bound is reached: memory follows
    the tokens in use (the mixed load run's flat-memory figure)."""
    now = [float(NOW)]
    verifier = make_verifier()
    verifier._clock = lambda: now[0]
    old = [broker.tokens.mint() for _ in range(3)]  # exp NOW + 300
    for token in old:
        assert await verifier.verify_token(token) is not None
    now[0] = NOW + 300 + 31  # past exp and the leeway
    broker.tokens.clock = lambda: int(now[0])
    fresh = broker.tokens.mint()
    assert await verifier.verify_token(fresh) is not None
    assert list(verifier._verified) == [fresh]


async def test_refused_tokens_are_not_remembered(
    verifier: BrokerTokenVerifier, broker: FakeBroker
) -> None:
    assert await verifier.verify_token(broker.tokens.mint(audience="http://x.test/mcp")) is None
    assert await verifier.verify_token(_unknown_kid(broker)) is None
    assert verifier._verified == {}


async def test_each_request_gets_its_own_claims(
    verifier: BrokerTokenVerifier, broker: FakeBroker
) -> None:
    token = broker.tokens.mint(actors=["summarizer", "research-agent"])
    first = await verifier.verify_token(token)
    assert first is not None
    first.claims["act"]["sub"] = "someone-else"  # a careless middleware
    second = await verifier.verify_token(token)
    assert second is not None
    assert second.claims["act"]["sub"] == "summarizer"
