"""JOSE helpers for tests: keys of every supported type, signing, tampering, a pinned clock,
and a counting JWKS fetch (so a test can assert how often keys were fetched)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from broker.jwks import (
    JwksCache,
)

NOW = 1_700_000_000.0


@functools.cache
def rsa_private(name: str = "a", bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_private(curve: str = "P-256", name: str = "a") -> ec.EllipticCurvePrivateKey:
    curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed25519_private(name: str = "a") -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@dataclass(frozen=True)
class SigningKey:
    """A private key with its kid and default alg: mints tokens, exports its public JWK."""

    private: Any
    alg: str
    kid: str | None = "k1"

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        exporter: Any = {"RSA": RSAAlgorithm, "EC": ECAlgorithm}.get(self.kty, OKPAlgorithm)
        data: dict[str, Any] = exporter.to_jwk(public, as_dict=True)
        if self.kid is not None:
            data["kid"] = self.kid
        return {**data, **extra}

    @property
    def kty(self) -> str:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return "RSA"
        return "EC" if isinstance(self.private, ec.EllipticCurvePrivateKey) else "OKP"

    def sign(self, claims: Mapping[str, Any], *, alg: str | None = None,
             headers: Mapping[str, Any] | None = None, kid: bool = True) -> str:
        all_headers = {"kid": self.kid} if kid and self.kid is not None else {}
        return jwt.encode(dict(claims), self.private, algorithm=alg or self.alg,
                          headers={**all_headers, **(headers or {})})

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: Mapping[str, Any], claims: Mapping[str, Any],
                   hmac_key: bytes | None = None) -> str:
    """A token no library would mint: `alg: none`, or HS256 keyed with a public key PEM."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tamper(token: str, **changes: Any) -> str:
    """Replace claims in the payload but keep the original signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64url(json.dumps({**claims, **changes}).encode())}.{signature}"


RSA_KEY = SigningKey(rsa_private(), "RS256", "rsa-1")
RSA_KEY_2 = SigningKey(rsa_private("b"), "RS256", "rsa-2")
ES256_KEY = SigningKey(ec_private("P-256"), "ES256", "ec-256")
ES384_KEY = SigningKey(ec_private("P-384"), "ES384", "ec-384")
ES512_KEY = SigningKey(ec_private("P-521"), "ES512", "ec-521")
ED_KEY = SigningKey(ed25519_private(), "EdDSA", "ed-1")


@dataclass
class CountingFetch:
    """A fetch callable returning `jwks` (or raising `failure`), counting its calls."""

    jwks: dict[str, Any]
    calls: int = 0
    failure: Exception | None = None
    gate: asyncio.Event | None = None

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return self.jwks


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def cache_of(*keys: SigningKey, clock: Clock | None = None,
             **options: Any) -> tuple[JwksCache, CountingFetch]:
    fetch = CountingFetch(jwks_of(*keys))
    return JwksCache(fetch, clock=clock or Clock(), **options), fetch
