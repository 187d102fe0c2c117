"""Layers that a second layer hides in the end-to-end battery, pinned one by one.

Some attacks meet two defences: removing one leaves the HTTP tests green (PyJWT refuses an
unknown `crit` by itself, base64 refuses non-ASCII text, an exact catalog lookup refuses a
resource with a fragment, PyJWT refuses an algorithm other than the key's). Each layer is
checked here directly, by the reason it gives, so that losing any one of them fails a test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import jwt
import pytest

from broker import tokens
from broker.claims import build_agent_claims
from broker.errors import InvalidTarget
from broker.exchange import GRANT_TYPE, ID_TOKEN_TYPE, parse_exchange_request
from broker.jwks import JwksCache, KeyNotFound
from broker.jws import TokenRejected, read_unverified
from broker.keys import Keyring, generate_key
from mcp_plugin.verifier import BrokerTokenVerifier
from mcp_plugin.verifier import TokenRejected as PluginRejected
from tests.support.jose import ED_KEY, b64url, jwks_of

NOW = 1_700_000_000.0
ISSUER = "http://broker.test"
RESOURCE = "http://mcp.test/mcp"


@pytest.fixture(scope="module")
def ring() -> Keyring:
    return Keyring([generate_key("EdDSA", NOW - 10)], max_token_ttl=300, grace=60)


def _agent_token(ring: Keyring, **header: object) -> str:
    claims = build_agent_claims(
        issuer=ISSUER, subject="alice", audience=RESOURCE, client_id="a", scopes=["x:y"],
        chain=["a"], roles=[], sid="s", jti="j", issued_at=int(NOW), expires_at=int(NOW) + 60)
    key = ring.signing_key(NOW)
    return jwt.encode(claims, key.private_key, algorithm=key.alg,
                      headers={"typ": "at+jwt", "kid": key.kid, **header})


def _fullwidth(token: str) -> str:
    return token[:-1] + chr(ord("A") + 0xFEE0)


@pytest.mark.parametrize(("make", "reason"), [
    pytest.param(lambda t: _fullwidth(t), "not ASCII", id="non-ascii"),
    pytest.param(lambda t: t + "x" * 9000, "too long", id="oversized"),
    pytest.param(lambda t: t + ".a.b", "not a compact JWS", id="jwe-shaped"),
])
def test_shape_checks_come_before_any_decoding(ring: Keyring, make: Callable[[str], str],
                                               reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason):
        read_unverified(make(_agent_token(ring)), max_length=8192)


def test_broker_refuses_crit_even_one_pyjwt_understands(ring: Keyring) -> None:
    """`crit` meets PyJWT's header checks first (in `read_unverified`), then ours
    (`tokens.verify`, `JwksCache.key_for`, pinned below): either alone refuses it."""
    head, body, sig = _agent_token(ring).split(".")
    header = {**json.loads(base64.urlsafe_b64decode(head + "==")), "crit": ["b64"],
              "b64": True}
    token = f"{b64url(json.dumps(header).encode())}.{body}.{sig}"
    with pytest.raises(TokenRejected):
        read_unverified(token, max_length=8192)
    with pytest.raises(TokenRejected):
        tokens.verify(token, ring, issuer=ISSUER, now=NOW, leeway=0)


async def test_upstream_key_lookup_refuses_crit_before_pyjwt_would() -> None:
    cache = JwksCache.from_static(jwks_of(ED_KEY))
    with pytest.raises(KeyNotFound, match="crit"):
        await cache.key_for({"alg": "EdDSA", "kid": ED_KEY.kid, "crit": ["urn:x"]})


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256"])
def test_broker_agent_tokens_allow_only_eddsa_and_es256(ring: Keyring, alg: str) -> None:
    token = _agent_token(ring)
    _, body, sig = token.split(".")
    header = {"alg": alg, "typ": "at+jwt", "kid": ring.signing_key(NOW).kid}
    forged = f"{b64url(json.dumps(header).encode())}.{body}.{sig}"
    with pytest.raises(TokenRejected, match="algorithm or kid not acceptable"):
        tokens.verify(forged, ring, issuer=ISSUER, now=NOW, leeway=0)


@pytest.mark.parametrize("header", [{"crit": ["b64"], "b64": True}, {"jku": "http://x"},
                                    {"x5c": ["AA"]}], ids=["crit-b64", "jku", "x5c"])
def test_plugin_refuses_header_parameters_before_any_key_lookup(header: dict[str, object]
                                                                ) -> None:
    verifier = BrokerTokenVerifier(broker=ISSUER, resource=RESOURCE)
    # built by hand: PyJWT drops `b64: true` when encoding; the signature is never reached
    head = {"alg": "EdDSA", "typ": "at+jwt", "kid": "k", **header}
    token = f"{b64url(json.dumps(head).encode())}.{b64url(b'{}')}.{b64url(b'sig')}"
    with pytest.raises(PluginRejected, match="forbidden header"):
        verifier._read_header(token)


@pytest.mark.parametrize("field", ["resource", "audience"])
def test_a_resource_with_a_fragment_is_refused_before_the_catalog_lookup(field: str) -> None:
    form = {"grant_type": GRANT_TYPE, "subject_token": "t", "subject_token_type": ID_TOKEN_TYPE,
            field: RESOURCE + "#f"}
    with pytest.raises(InvalidTarget, match="without a fragment"):
        parse_exchange_request(form)
