"""The DPoP proof checker (RFC 9449 §4.3), both twins: `broker.dpop` and `mcp_plugin.dpop`.

Pure, with a pinned clock. Valid proofs are the agent side's (`broker.client.dpop.DPoPKey`),
so these tests also pin that what agents send is what servers accept.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import broker.dpop
import broker.dpop_nonce
import mcp_plugin.dpop
import mcp_plugin.dpop_nonce
from tests.support.dpop import (
    DPoPKey,
    forged_proof,
    p256,
    private_jwk,
    proof_claims,
    public_jwk,
    unsigned_proof,
)
from tests.support.jose import NOW

URL = "https://broker.example.com/oauth2/token"
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln"
WINDOW = 60
ROOT = Path(__file__).resolve().parents[2]

twins = pytest.mark.parametrize("dpop", [broker.dpop, mcp_plugin.dpop], ids=["broker", "plugin"])


@pytest.mark.parametrize("module", ["dpop.py", "dpop_nonce.py"])
def test_the_twins_are_identical(module: str) -> None:
    """broker and mcp_plugin may not import each other, so the checker and the nonces are
    copied: a fix to one copy that misses the other fails here."""
    assert (ROOT / "broker" / module).read_bytes() == (ROOT / "mcp_plugin" / module).read_bytes()


def _key(alg: str) -> DPoPKey:
    key = DPoPKey.generate(alg)  # type: ignore[arg-type]
    key._clock = lambda: NOW
    return key


@twins
@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_an_agents_proof_is_accepted_and_names_its_key(dpop: ModuleType, alg: str) -> None:
    key = _key(alg)
    proof = dpop.validate_proof(key.proof("POST", URL), method="POST", uri=URL, now=NOW,
                                window=WINDOW)
    assert proof.jkt == key.thumbprint
    assert proof.expires_at == int(NOW) + WINDOW + 1 and proof.jti


@twins
def test_ath_must_hash_the_presented_token(dpop: ModuleType) -> None:
    key = _key("EdDSA")
    good = key.proof("GET", URL, access_token=TOKEN)
    assert dpop.validate_proof(good, method="GET", uri=URL, now=NOW, window=WINDOW,
                               access_token=TOKEN).jkt == key.thumbprint
    with pytest.raises(dpop.InvalidProof, match="ath"):
        dpop.validate_proof(good, method="GET", uri=URL, now=NOW, window=WINDOW,
                            access_token=TOKEN + "x")
    with pytest.raises(dpop.InvalidProof, match="ath"):  # no ath at all
        dpop.validate_proof(key.proof("GET", URL), method="GET", uri=URL, now=NOW,
                            window=WINDOW, access_token=TOKEN)


@twins
@pytest.mark.parametrize(("seen_as", "accepted"), [
    pytest.param("https://BROKER.example.com:443/oauth2/token", True, id="case-and-port"),
    pytest.param("https://broker.example.com/oauth2/token?x=1#f", True, id="query-fragment"),
    pytest.param("http://broker.example.com/oauth2/token", False, id="other-scheme"),
    pytest.param("https://broker.example.com:8443/oauth2/token", False, id="other-port"),
    pytest.param("https://evil.example.com/oauth2/token", False, id="other-host"),
    pytest.param("https://broker.example.com/oauth2/revoke", False, id="other-path"),
])
def test_htu_is_compared_without_query_and_fragment(dpop: ModuleType, seen_as: str,
                                                    accepted: bool) -> None:
    proof = _key("EdDSA").proof("POST", seen_as)
    if accepted:
        dpop.validate_proof(proof, method="POST", uri=URL, now=NOW, window=WINDOW)
    else:
        with pytest.raises(dpop.InvalidProof, match="htu"):
            dpop.validate_proof(proof, method="POST", uri=URL, now=NOW, window=WINDOW)


@twins
@pytest.mark.parametrize(("iat", "accepted"), [
    pytest.param(NOW - WINDOW, True, id="oldest-accepted"),
    pytest.param(NOW + WINDOW, True, id="newest-accepted"),
    pytest.param(NOW - WINDOW - 1, False, id="stale"),
    pytest.param(NOW + WINDOW + 1, False, id="future"),
    pytest.param(None, False, id="missing"),
    pytest.param("1700000000", False, id="string"),
    pytest.param(True, False, id="boolean"),
    pytest.param(float("nan"), False, id="nan"),
    pytest.param(float("inf"), False, id="infinity"),
])
def test_iat_window(dpop: ModuleType, iat: Any, accepted: bool) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    proof = forged_proof(private, proof_claims("POST", URL, iat=iat))
    if accepted:
        dpop.validate_proof(proof, method="POST", uri=URL, now=NOW, window=WINDOW)
    else:
        with pytest.raises(dpop.InvalidProof, match="iat"):
            dpop.validate_proof(proof, method="POST", uri=URL, now=NOW, window=WINDOW)


ED = ed25519.Ed25519PrivateKey.generate()
EC = p256()
OTHER = ed25519.Ed25519PrivateKey.generate()


def _claims(**over: Any) -> dict[str, Any]:
    return proof_claims("POST", URL, now=NOW, **over)


REFUSED = [
    pytest.param(lambda: forged_proof(ED, _claims(htm="GET")), "htm", id="wrong-htm"),
    pytest.param(lambda: forged_proof(ED, _claims(htm="post")), "htm", id="htm-case"),
    pytest.param(lambda: forged_proof(ED, _claims(htm=None)), "htm", id="no-htm"),
    pytest.param(lambda: forged_proof(ED, _claims(htu=None)), "htu", id="no-htu"),
    pytest.param(lambda: forged_proof(ED, _claims(htu="/oauth2/token")), "htu",
                 id="relative-htu"),
    pytest.param(lambda: forged_proof(ED, _claims(htu=URL + "\u00e9")), "htu",
                 id="non-ascii-htu"),
    pytest.param(lambda: forged_proof(ED, _claims(jti=None)), "jti", id="no-jti"),
    pytest.param(lambda: forged_proof(ED, _claims(jti="x" * 257)), "jti", id="long-jti"),
    pytest.param(lambda: forged_proof(ED, _claims(), typ="JWT"), "typ", id="typ-jwt"),
    pytest.param(lambda: forged_proof(ED, _claims(), typ=None), "typ", id="no-typ"),
    pytest.param(lambda: forged_proof(ED, _claims(), typ="at+jwt"), "typ", id="typ-at-jwt"),
    pytest.param(lambda: forged_proof(ED, _claims(), jwk=None), "jwk", id="no-jwk"),
    pytest.param(lambda: forged_proof(ED, _claims(), jwk=private_jwk(ED)), "private",
                 id="private-key-in-jwk"),
    pytest.param(lambda: forged_proof(ED, _claims(), jwk=public_jwk(OTHER)), "signature",
                 id="signed-by-another-key"),
    pytest.param(lambda: forged_proof(ED, _claims(), jwk=public_jwk(EC)), "match alg",
                 id="jwk-type-not-alg"),
    pytest.param(lambda: forged_proof(ED, _claims(), kid="k1"), "header", id="kid"),
    pytest.param(lambda: forged_proof(ED, _claims(), jku="https://evil/jwks"), "header",
                 id="jku"),
    pytest.param(lambda: forged_proof(ED, _claims(), alg="HS256", key=b"k" * 32,
                                      jwk={"kty": "oct", "k": "aaaa"}), "alg", id="hs256"),
    pytest.param(lambda: unsigned_proof({"typ": "dpop+jwt", "alg": "none",
                                         "jwk": public_jwk(ED)}, _claims()), "alg",
                 id="alg-none"),
    pytest.param(lambda: unsigned_proof({"typ": "dpop+jwt", "alg": "EdDSA",
                                         "jwk": public_jwk(ED)}, _claims()), "signature",
                 id="signature-stripped"),
    pytest.param(lambda: unsigned_proof({"typ": "dpop+jwt", "alg": "ES384",
                                         "jwk": public_jwk(EC)}, _claims()) + "c2ln", "alg",
                 id="es384"),
    pytest.param(lambda: "x" * 5000, "size", id="oversized"),
    pytest.param(lambda: "a.b", "size", id="two-parts"),
    pytest.param(lambda: "a.b.c.d.e", "size", id="jwe-shaped"),
    pytest.param(lambda: "!!.!!.!!", "header", id="garbage"),
]


@twins
@pytest.mark.parametrize(("make", "reason"), REFUSED)
def test_refused(dpop: ModuleType, make: Any, reason: str) -> None:
    with pytest.raises(dpop.InvalidProof, match=reason):
        dpop.validate_proof(make(), method="POST", uri=URL, now=NOW, window=WINDOW)


@twins
def test_thumbprint_matches_rfc_7638_example(dpop: ModuleType) -> None:
    """RFC 8037 §A.3: the Ed25519 example key's RFC 7638 thumbprint."""
    jwk = {"kty": "OKP", "crv": "Ed25519",
           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert dpop.jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


nonce_twins = pytest.mark.parametrize("nonces", [broker.dpop_nonce, mcp_plugin.dpop_nonce],
                                      ids=["broker", "plugin"])
SECRET = "s" * 32


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@nonce_twins
def test_a_nonce_lives_from_one_to_two_periods(nonces: ModuleType) -> None:
    clock = Clock(60 * 1000)  # the start of a period
    issuer = nonces.NonceIssuer(SECRET, URL, period=60, clock=clock)
    nonce = issuer.current()
    assert len(nonce) == 32 and issuer.current() is nonce  # once per period
    clock.now += 119
    assert issuer.accepts(nonce) and issuer.current() != nonce
    clock.now += 1
    assert not issuer.accepts(nonce)
    clock.now = 60 * 999 + 30  # a replica whose clock is a period behind
    assert issuer.accepts(nonce)


@nonce_twins
def test_replicas_share_nonces_and_servers_do_not(nonces: ModuleType) -> None:
    clock = Clock()
    here = nonces.NonceIssuer(SECRET, URL, clock=clock)
    replica = nonces.NonceIssuer(SECRET.encode(), URL, clock=clock)
    assert replica.accepts(here.current())
    assert not nonces.NonceIssuer(SECRET, "https://mcp.example.com/mcp",
                                  clock=clock).accepts(here.current())
    assert not nonces.NonceIssuer("t" * 32, URL, clock=clock).accepts(here.current())


@nonce_twins
@pytest.mark.parametrize("value", [None, 7, "", "x" * 32, "é" * 32, "A" * 31 + "=",
                                   "+" * 32, ["n"]])
def test_anything_else_is_refused(nonces: ModuleType, value: Any) -> None:
    issuer = nonces.NonceIssuer(SECRET, URL, clock=Clock())
    assert not issuer.accepts(value)
    nonce = issuer.current()
    flipped = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    assert not issuer.accepts(flipped)


@nonce_twins
def test_a_short_secret_is_refused(nonces: ModuleType) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        nonces.NonceIssuer("short", URL)


@twins
def test_a_required_nonce_is_checked_after_everything_else(dpop: ModuleType) -> None:
    issuer = broker.dpop_nonce.NonceIssuer(SECRET, URL, clock=Clock())
    key = _key("EdDSA")
    check = dict(method="POST", uri=URL, now=NOW, window=WINDOW, nonce=issuer.accepts)
    assert dpop.validate_proof(key.proof("POST", URL, nonce=issuer.current()), **check)
    for nonce in (None, "stale-or-made-up"):
        with pytest.raises(dpop.NonceRequired) as asked:
            dpop.validate_proof(key.proof("POST", URL, nonce=nonce), **check)
        assert asked.value.jkt == key.thumbprint  # whose proof it was, for the key check
    with pytest.raises(dpop.InvalidProof) as caught:  # wrong otherwise: not a nonce problem
        dpop.validate_proof(key.proof("GET", URL), **check)
    assert not isinstance(caught.value, dpop.NonceRequired)
