"""Keyring windows, key file handling, and agent token mint/verify with a pinned clock."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import jwt
import pytest

from broker import tokens
from broker.claims import build_act, build_agent_claims, parse_act
from broker.jws import TokenRejected
from broker.keys import Keyring, KeyringFile, generate_key

ISSUER = "https://broker.test"
T0 = 1_800_000_000


def claims(**over):
    base = dict(issuer=ISSUER, subject="alice", audience="https://mcp.test/mcp",
                client_id="sub-agent", scopes=["crm:read"], chain=["agent", "sub-agent"],
                roles=["sales_rep"], sid="s1", jti="j1", issued_at=T0, expires_at=T0 + 300)
    return build_agent_claims(**{**base, **over})


@pytest.mark.parametrize("chain", [["a"], ["a", "b"], ["a", "b", "c"]], ids=["1", "2", "3"])
def test_act_round_trips_and_nests_current_actor_outermost(chain) -> None:
    act = build_act(chain)
    assert act["sub"] == chain[-1]
    assert parse_act(act) == tuple(chain)


def test_act_nesting_matches_the_contract() -> None:
    assert build_act(["agent", "sub_agent"]) == {"sub": "sub_agent", "act": {"sub": "agent"}}


@pytest.mark.parametrize("act", [None, {}, {"sub": 1}, {"sub": "a", "act": "b"}, "a"],
                         ids=["none", "empty", "int-sub", "string-act", "string"])
def test_malformed_act_is_rejected(act) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_act(act)


def test_act_depth_is_bounded() -> None:
    with pytest.raises(ValueError, match="deeply"):
        parse_act(build_act([f"a{i}" for i in range(40)]))


@pytest.fixture(params=["EdDSA", "ES256"])
def ring(request) -> Keyring:
    return Keyring([generate_key(request.param, T0 - 10)], max_token_ttl=300, grace=60)


def test_minted_token_has_the_contract_header_and_verifies(ring: Keyring) -> None:
    token = tokens.mint(claims(), ring, T0)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == ring.keys[0].alg
    assert header["kid"] == ring.keys[0].kid
    parsed = tokens.verify(token, ring, issuer=ISSUER, now=T0 + 1, leeway=0,
                           audience="https://mcp.test/mcp")
    assert parsed.chain == ("agent", "sub-agent")
    assert parsed.scopes == {"crm:read"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _swap_payload(token: str, **changes) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return ".".join([head, _b64({**body, **changes}), sig])


@pytest.mark.parametrize(
    ("make", "now", "audience", "reason"),
    [
        pytest.param(lambda t, r: t, T0 + 331, None, "expired", id="expired-past-leeway"),
        pytest.param(lambda t, r: t, T0 - 31, None, "in the future", id="not-yet-valid"),
        pytest.param(lambda t, r: t, T0, "https://other.test/mcp", "wrong audience",
                     id="wrong-audience"),
        pytest.param(lambda t, r: _swap_payload(t, scope="crm:read crm:delete"), T0, None,
                     "signature", id="tampered-payload"),
        pytest.param(lambda t, r: ".".join([_b64({"alg": "none", "typ": "at+jwt"}),
                                            t.split(".")[1], ""]), T0, None,
                     "algorithm", id="alg-none"),
        pytest.param(lambda t, r: jwt.encode(claims(), "k" * 32, algorithm="HS256",
                                             headers={"typ": "at+jwt", "kid": r.keys[0].kid}),
                     T0, None, "algorithm", id="hs256"),
        pytest.param(lambda t, r: tokens.mint(claims(), Keyring([generate_key("EdDSA", T0)],
                     max_token_ttl=300, grace=0), T0), T0, None, "unknown kid",
                     id="foreign-key"),
        pytest.param(lambda t, r: jwt.encode(claims(), r.keys[0].private_key,
                     algorithm=r.keys[0].alg, headers={"kid": r.keys[0].kid, "typ": "JWT"}),
                     T0, None, "typ", id="wrong-typ"),
        pytest.param(lambda t, r: jwt.encode({**claims(), "iss": "https://evil.test"},
                     r.keys[0].private_key, algorithm=r.keys[0].alg,
                     headers={"kid": r.keys[0].kid, "typ": "at+jwt"}),
                     T0, None, "signature or claims", id="other-issuer"),
        pytest.param(lambda t, r: t + "." + t, T0, None, "compact", id="jwe-shaped"),
        pytest.param(lambda t, r: "é" + t, T0, None, "not ASCII", id="non-ascii"),
        pytest.param(lambda t, r: t + "A" * 9000, T0, None, "too long", id="oversized"),
    ],
)
def test_verify_rejects(ring: Keyring, make, now, audience, reason) -> None:
    token = make(tokens.mint(claims(), ring, T0), ring)
    with pytest.raises(TokenRejected, match=reason):
        tokens.verify(token, ring, issuer=ISSUER, now=now, leeway=30, audience=audience)


def test_rotation_keeps_old_tokens_valid_until_they_expire() -> None:
    ring = Keyring([generate_key("EdDSA", T0 - 100)], max_token_ttl=300, grace=60)
    old_token = tokens.mint(claims(), ring, T0)
    rotated = ring.rotated("EdDSA", T0 + 10)
    assert rotated.signing_key(T0 + 10).kid != ring.keys[0].kid
    assert tokens.verify(old_token, rotated, issuer=ISSUER, now=T0 + 200, leeway=0)
    assert len(rotated.jwks(T0 + 10)["keys"]) == 2
    # Retired at T0+10: published until T0+10 + 300 + 60, then gone.
    assert len(rotated.jwks(T0 + 369)["keys"]) == 2
    assert len(rotated.jwks(T0 + 371)["keys"]) == 1
    assert rotated.rotated("EdDSA", T0 + 400).keys[0].kid == rotated.keys[1].kid  # pruned


def test_pending_key_is_published_before_it_signs() -> None:
    ring = Keyring([generate_key("EdDSA", T0)], max_token_ttl=300, grace=0)
    rotated = ring.rotated("ES256", T0, activate_in=120)
    assert rotated.signing_key(T0 + 60).kid == ring.keys[0].kid
    assert {k["kid"] for k in rotated.jwks(T0 + 60)["keys"]} == {k.kid for k in rotated.keys}
    assert rotated.signing_key(T0 + 120).alg == "ES256"


def test_key_file_is_created_0600_and_reloaded_on_change(tmp_path: Path) -> None:
    path = tmp_path / "run" / "keys.json"
    first = KeyringFile(path, "EdDSA", max_token_ttl=300, grace=0, clock=lambda: T0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in path.read_text()
    second = KeyringFile(path, "EdDSA", max_token_ttl=300, grace=0, clock=lambda: T0)
    assert second.ring.keys[0].kid == first.ring.keys[0].kid
    new = first.rotate(T0 + 5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert second.current(T0 + 6).signing_key(T0 + 6).kid == new.kid
    assert not any("PRIVATE" in json.dumps(k) for k in second.ring.jwks(T0 + 6)["keys"])
