"""Forging DPoP proofs for tests: a valid proof with one thing changed.

Valid proofs come from the agent-side `broker.client.dpop.DPoPKey` (what agents really send);
`forged_proof` signs any header and claims with PyJWT, so a test can break exactly one rule.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from broker.client.dpop import DPoPKey, access_token_hash, htu_of


def public_jwk(private: Any) -> dict[str, Any]:
    exporter: Any = OKPAlgorithm if isinstance(private, ed25519.Ed25519PrivateKey) else (
        ECAlgorithm)
    jwk: dict[str, Any] = exporter.to_jwk(private.public_key(), as_dict=True)
    return jwk


def private_jwk(private: Any) -> dict[str, Any]:
    exporter: Any = OKPAlgorithm if isinstance(private, ed25519.Ed25519PrivateKey) else (
        ECAlgorithm)
    jwk: dict[str, Any] = exporter.to_jwk(private, as_dict=True)
    return jwk


def proof_claims(method: str, url: str, *, access_token: str | None = None,
                 now: float | None = None, **over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method, "htu": htu_of(url),
                              "iat": int(time.time() if now is None else now)}
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def forged_proof(private: Any, claims: dict[str, Any], *, alg: str | None = None,
                 key: Any = None, **header: Any) -> str:
    """Sign `claims` with `private` (or `key`, for HS256/none), header `typ` dpop+jwt and the
    public `jwk` of `private` unless overridden; `None` in `header` removes a member."""
    if alg is None:
        alg = "EdDSA" if isinstance(private, ed25519.Ed25519PrivateKey) else "ES256"
    fields: dict[str, Any] = {"typ": "dpop+jwt", "jwk": public_jwk(private), **header}
    fields = {k: v for k, v in fields.items() if v is not None}
    return jwt.encode(claims, private if key is None else key, algorithm=alg, headers=fields)


def unsigned_proof(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """`alg: none` the way an attacker writes it: an empty signature."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part(header)}.{part(claims)}."


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


__all__ = ["DPoPKey", "forged_proof", "p256", "private_jwk", "proof_claims", "public_jwk",
           "unsigned_proof"]
