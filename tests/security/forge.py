"""The token attacks of RFC 8725 as data: each `Attack` forges one hostile token for a `Target`.

A `Target` is one place that validates tokens (the plugin, the broker's upstream subject-token
validation, its re-delegation path, its client assertions) described by what a VALID token
for it looks like: the key it trusts (the tests hold the private half, as the real signer
would), fresh valid claims, the `typ` it expects and its size limit. Every attack starts from
that valid token and changes one thing, so a refusal can only come from the defence the attack
is named after (each target also has a control test that the untouched token is accepted).
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.support.jose import SigningKey, b64url, tamper, unsigned_token

ATTACKER_KID = "attacker-1"


@dataclass(frozen=True)
class Outcome:
    status: int
    error: str | None = None


@dataclass
class Target:
    name: str
    key: SigningKey
    """The key the target trusts: a token it signs is genuine."""
    attacker: SigningKey
    """A key of the same type that the target does not trust."""
    claims: Callable[[], dict[str, Any]]
    typ: str | None
    wrong_typ: str
    max_length: int
    leeway: int
    escalate: dict[str, Any]
    """A claim change an attacker would want (wider scope, more roles, a fresh jti)."""
    present: Callable[[str], Outcome]
    accepted: Outcome
    refused: frozenset[Outcome]
    typ_required: bool = True
    claims_routed_by_iss: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def header(self, **changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"alg": self.key.alg, "kid": self.key.kid}
        if self.typ is not None:
            base["typ"] = self.typ
        return {k: v for k, v in {**base, **changes}.items() if v is not None}

    def sign(self, claims: dict[str, Any] | None = None, *, key: SigningKey | None = None,
             **header: Any) -> str:
        signer = key or self.key
        headers = self.header(**{"alg": signer.alg, "kid": signer.kid, **header})
        alg = headers.pop("alg")
        return jwt.encode(claims or self.claims(), signer.private, algorithm=alg,
                          headers=headers)

    def valid(self) -> str:
        return self.sign()


Forge = Callable[[Target, str], str]
"""(target, attacker server URL) -> hostile token."""


@dataclass(frozen=True)
class Attack:
    id: str
    forge: Forge
    applies: Callable[[Target], bool] = lambda target: True


def public_pem(key: SigningKey) -> bytes:
    return key.public_pem()


def self_signed_x5c(key: SigningKey) -> str:
    """The key's public half in a self-signed certificate, as an `x5c` entry (base64 DER)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "security-test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.private.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    digest = None if isinstance(key.private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(key.private, digest)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def attacker_key_like(key: SigningKey) -> SigningKey:
    """An untrusted key of the same type and algorithm as `key`."""
    if isinstance(key.private, rsa.RSAPrivateKey):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif isinstance(key.private, ed25519.Ed25519PrivateKey):
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(key.private.curve)
    return SigningKey(private, key.alg, ATTACKER_KID)


def _hs256(target: Target, hmac_key: bytes, **header: Any) -> str:
    return unsigned_token(target.header(alg="HS256", **header), target.claims(), hmac_key)


def _fullwidth_last_alnum(token: str) -> str:
    """Swap one signature character for its fullwidth twin (NFKC would map it back)."""
    for i in range(len(token) - 1, 0, -1):
        if token[i].isalnum():
            return token[:i] + chr(ord(token[i]) + 0xFEE0) + token[i + 1:]
    raise AssertionError("no alphanumeric character in the token")


def _jwe_shaped(target: Target) -> str:
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": target.key.kid}
    parts = [b64url(json.dumps(header).encode())]
    parts += [b64url(secrets.token_bytes(n)) for n in (256, 12, 64, 16)]
    return ".".join(parts)


def _time_shifted(target: Target, **claims: Any) -> str:
    """The valid claims with `claims` changed; a None value removes the claim."""
    merged = {**target.claims(), **claims}
    return target.sign({k: v for k, v in merged.items() if v is not None})


def _now() -> int:
    return int(time.time())


def _without(target: Target, name: str) -> str:
    claims = target.claims()
    claims.pop(name)
    return target.sign(claims)


ALG_NONE_SPELLINGS = ("none", "None", "NONE", "nOnE")

ATTACKS: list[Attack] = [
    *[Attack(f"alg-{spelling}", lambda t, a, s=spelling: unsigned_token(
        t.header(alg=s), t.claims())) for spelling in ALG_NONE_SPELLINGS],
    Attack("hs256-keyed-with-public-key-pem",
           lambda t, a: _hs256(t, public_pem(t.key))),
    Attack("hs256-keyed-with-public-key-jwk",
           lambda t, a: _hs256(t, json.dumps(t.key.jwk()).encode())),
    Attack("signature-stripped", lambda t, a: t.valid().rsplit(".", 1)[0] + "."),
    Attack("tampered-payload-original-signature",
           lambda t, a: tamper(t.valid(), **t.escalate)),
    Attack("untrusted-key-with-trusted-kid", lambda t, a: t.sign(key=t.attacker, kid=t.key.kid)),
    Attack("kid-unknown", lambda t, a: t.sign(key=t.attacker, kid="kid-nobody-published")),
    Attack("kid-path-traversal-etc-passwd",
           lambda t, a: t.sign(key=t.attacker, kid="../../etc/passwd")),
    # the classic: a kid naming an empty file makes a naive verifier's HMAC key empty
    Attack("kid-path-dev-null-hs256-empty-key",
           lambda t, a: _hs256(t, b"", kid="../../../../../../dev/null")),
    Attack("kid-url", lambda t, a: t.sign(key=t.attacker, kid=f"{a}/jwks")),
    Attack("kid-sql-injection-hs256",
           lambda t, a: _hs256(t, b"attacker", kid="x' UNION SELECT 'attacker' -- ")),
    Attack("jku-attacker-jwks", lambda t, a: t.sign(key=t.attacker, jku=f"{a}/jwks")),
    Attack("jku-copy-of-real-jwks", lambda t, a: t.sign(jku=f"{a}/jwks-real")),
    Attack("x5u-attacker-cert", lambda t, a: t.sign(key=t.attacker, x5u=f"{a}/x5u")),
    Attack("x5u-real-key-cert", lambda t, a: t.sign(x5u=f"{a}/x5u-real")),
    Attack("embedded-jwk-attacker-key",
           lambda t, a: t.sign(key=t.attacker, jwk=t.attacker.jwk())),
    Attack("embedded-jwk-real-key", lambda t, a: t.sign(jwk=t.key.jwk())),
    Attack("x5c-attacker-cert", lambda t, a: t.sign(key=t.attacker, x5c=[
        self_signed_x5c(t.attacker)])),
    Attack("x5c-real-key-cert", lambda t, a: t.sign(x5c=[self_signed_x5c(t.key)])),
    Attack("crit-unknown-extension", lambda t, a: t.sign(
        crit=["urn:example:must-understand"], **{"urn:example:must-understand": True})),
    Attack("typ-wrong", lambda t, a: t.sign(typ=t.wrong_typ)),
    Attack("typ-missing", lambda t, a: t.sign(typ=None), applies=lambda t: t.typ_required),
    Attack("aud-wrong", lambda t, a: _time_shifted(t, aud="http://127.0.0.1:9/elsewhere")),
    Attack("aud-missing", lambda t, a: _without(t, "aud")),
    Attack("iss-other", lambda t, a: _time_shifted(t, iss=a)),
    Attack("iss-missing", lambda t, a: _without(t, "iss")),
    Attack("expired-beyond-leeway", lambda t, a: _time_shifted(
        t, exp=_now() - t.leeway - 60, iat=_now() - t.leeway - 120, nbf=None)),
    Attack("nbf-beyond-leeway", lambda t, a: _time_shifted(
        t, nbf=_now() + t.leeway + 60, exp=_now() + t.leeway + 200)),
    Attack("iat-beyond-leeway", lambda t, a: _time_shifted(
        t, iat=_now() + t.leeway + 60, exp=_now() + t.leeway + 200, nbf=None)),
    Attack("oversized", lambda t, a: _time_shifted(t, pad="x" * t.max_length)),
    Attack("non-ascii-fullwidth-character", lambda t, a: _fullwidth_last_alnum(t.valid())),
    Attack("jwe-shaped-five-parts", lambda t, a: _jwe_shaped(t)),
]
