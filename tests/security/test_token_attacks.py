"""RFC 8725 token attacks, each refused by every place that validates JWTs.

Node ids read as a checklist: `test_forged_token_is_refused[<target>-<attack>]`, with targets
`plugin` (BrokerTokenVerifier in a served MCP server), `upstream` (the broker's subject-token
validation of an upstream IdP), `redelegation` (the broker's validation of its own agent
tokens as subject tokens) and `client-assertion` (private_key_jwt). Each target's control
test shows that the same forging code, without the attack, produces a token it accepts; and
no verifier may ever fetch anything from the attacker's server the tokens point to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from tests.integration.conftest import Broker, basic, exchange_form
from tests.security.conftest import Server, post_form
from tests.security.forge import ALG_NONE_SPELLINGS, ATTACKS, Attack, Target, attacker_key_like
from tests.security.targets import (
    assertion_target,
    plugin_target,
    redelegation_target,
    upstream_target,
)
from tests.support.jose import RSA_KEY, SigningKey, tamper, unsigned_token

TARGETS = ("plugin", "upstream", "redelegation", "client-assertion")
TargetFactory = Callable[[str], Target]


@pytest.fixture(scope="module")
def targets(sec_broker: Broker, crm_url: str, trusted_idp: Server, attacker: Server,
            id_tokens: dict[str, str]) -> dict[str, Target]:
    return {
        "plugin": plugin_target(sec_broker, crm_url, attacker),
        "upstream": upstream_target(sec_broker, trusted_idp, attacker),
        "redelegation": redelegation_target(sec_broker, id_tokens["alice"], attacker),
        "client-assertion": assertion_target(sec_broker, id_tokens["alice"], attacker),
    }


@pytest.mark.parametrize("name", TARGETS)
def test_control_the_untampered_token_is_accepted(targets: dict[str, Target],
                                                  name: str) -> None:
    """Without this, every refusal below could come from a broken forging harness."""
    target = targets[name]
    assert target.present(target.valid()) == target.accepted


def _cases() -> list[object]:
    # which attacks apply depends only on static facts of a target (is typ required?)
    optional_typ = {"upstream", "client-assertion"}
    return [
        pytest.param(name, attack, id=f"{name}-{attack.id}")
        for name in TARGETS for attack in ATTACKS
        if attack.id != "typ-missing" or name not in optional_typ
    ]


@pytest.mark.parametrize(("name", "attack"), _cases())
def test_forged_token_is_refused(targets: dict[str, Target], attacker: Server, name: str,
                                 attack: Attack) -> None:
    target = targets[name]
    assert attack.applies(target)
    token = attack.forge(target, attacker.url)
    hits_before = len(attacker.hits)
    outcome = target.present(token)
    assert outcome in target.refused, f"{attack.id} against {name}: {outcome}"
    assert attacker.hits[hits_before:] == [], "a verifier fetched from the attacker's server"


@dataclass(frozen=True)
class _PublicKey:
    """The dev IdP's real public key as any attacker can fetch it from its JWKS."""

    pem: bytes
    jwk: dict[str, Any]


def _dev_idp_public(oidc_issuer: str) -> _PublicKey:
    jwk = httpx.get(f"{oidc_issuer}/jwks", trust_env=False, timeout=10).json()["keys"][0]
    public = RSAAlgorithm.from_jwk(jwk)
    pem = public.public_bytes(serialization.Encoding.PEM,  # type: ignore[union-attr]
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return _PublicKey(pem, jwk)


DEV_IDP_ATTACKS: dict[str, Callable[[str, _PublicKey, SigningKey], str]] = {
    **{f"alg-{s}": (lambda t, k, a, s=s: unsigned_token({"alg": s, "typ": "JWT"}, _claims(t)))
       for s in ALG_NONE_SPELLINGS},
    "hs256-keyed-with-public-key-pem": lambda t, k, a: unsigned_token(
        {"alg": "HS256", "typ": "JWT"}, _claims(t), k.pem),
    "hs256-keyed-with-public-key-jwk": lambda t, k, a: unsigned_token(
        {"alg": "HS256", "typ": "JWT"}, _claims(t), json.dumps(k.jwk).encode()),
    "signature-stripped": lambda t, k, a: t.rsplit(".", 1)[0] + ".",
    "tampered-roles-original-signature": lambda t, k, a: tamper(t, roles=["crm_admin"]),
    "resigned-by-attacker": lambda t, k, a: a.sign(_claims(t)),
    "resigned-by-attacker-with-embedded-jwk": lambda t, k, a: a.sign(
        _claims(t), headers={"jwk": a.jwk()}),
}


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@pytest.mark.parametrize("attack", DEV_IDP_ATTACKS.values(), ids=DEV_IDP_ATTACKS.keys())
def test_manipulated_dev_idp_id_token_is_refused(sec_broker: Broker, oidc_issuer: str,
                                                 id_tokens: dict[str, str], attacker: Server,
                                                 attack: Callable[..., str]) -> None:
    """The real provider's real ID token (RS256, no kid), manipulated the classic ways."""
    real = id_tokens["alice"]
    key = _dev_idp_public(oidc_issuer)
    rogue = attacker_key_like(RSA_KEY)
    ok = post_form(sec_broker, "/oauth2/token", exchange_form(real, scope="crm:read"),
                   basic("research-agent"))
    assert ok.status_code == 200, ok.text  # control: the token itself is good
    response = post_form(sec_broker, "/oauth2/token",
                         exchange_form(attack(real, key, rogue), scope="crm:read"),
                         basic("research-agent"))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
