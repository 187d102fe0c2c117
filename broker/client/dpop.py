"""DPoP on the agent side (RFC 9449): a key pair, and fresh proofs signed with it.

`DPoPKey` holds one private key (Ed25519 by default, or P-256 for ES256) and signs proof JWTs
with `cryptography` directly: a compact JWS is two base64url JSON segments and a signature, and
broker.client does not depend on PyJWT. Each proof has a new `jti` and the current time as
`iat`; on a resource request it also carries `ath`, the hash of the access token it goes with.
A token bound to this key (`cnf.jkt` = `thumbprint`) is useless to whoever steals it alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DPoPAlgorithm = Literal["EdDSA", "ES256"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def access_token_hash(token: str) -> str:
    """`ath`: base64url(SHA-256(ASCII of the access token))."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def htu_of(url: str) -> str:
    """The request URI without query and fragment (RFC 9449 §4.2 `htu`)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


class DPoPKey:
    """A DPoP key pair. Keep one per agent instance; share it only with a sub-agent that
    re-delegates this agent's bound tokens (the broker asks for a proof by the same key)."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
                 *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm: DPoPAlgorithm = "EdDSA"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
                private_key.curve, ec.SECP256R1):
            self.algorithm = "ES256"
        else:
            raise ValueError("a DPoP key is Ed25519 (EdDSA) or P-256 (ES256)")
        self._key = private_key
        self._clock = clock
        self._nonces: dict[str, str] = {}  # htu -> the latest DPoP-Nonce its server sent
        self.public_jwk = self._public_jwk()
        self.thumbprint = self._thumbprint()

    @classmethod
    def generate(cls, algorithm: DPoPAlgorithm = "EdDSA") -> DPoPKey:
        if algorithm == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> DPoPKey:
        """A key from an unencrypted PKCS#8 PEM (as `to_pem` writes it)."""
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("a DPoP key is Ed25519 (EdDSA) or P-256 (ES256)")
        return cls(key)

    def to_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM: store it like a password."""
        return self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def _public_jwk(self) -> dict[str, str]:
        public = self._key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes_raw()
            return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
        assert isinstance(public, ec.EllipticCurvePublicKey)
        numbers = public.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big"))}

    def _thumbprint(self) -> str:
        """RFC 7638 SHA-256 thumbprint: what the broker puts in `cnf.jkt`."""
        canonical = json.dumps(self.public_jwk, separators=(",", ":"), sort_keys=True)
        return _b64url(hashlib.sha256(canonical.encode()).digest())

    def remember_nonce(self, url: str, nonce: str) -> None:
        """Keep the `DPoP-Nonce` the server at `url` sent (RFC 9449 §8.2): the next proofs for
        `url` carry it unless given another, so a server that requires nonces asks only once.
        Bounded: the oldest of more than 64 servers is forgotten."""
        htu = htu_of(url)
        self._nonces.pop(htu, None)
        self._nonces[htu] = nonce
        while len(self._nonces) > 64:
            del self._nonces[next(iter(self._nonces))]

    def proof(self, method: str, url: str, *, access_token: str | None = None,
              nonce: str | None = None) -> str:
        """A fresh proof for one `method` request to `url` (with `ath` for `access_token`),
        with `nonce`, or else the one remembered for `url`, if any."""
        header = {"typ": "dpop+jwt", "alg": self.algorithm, "jwk": self.public_jwk}
        htu = htu_of(url)
        claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method.upper(),
                                  "htu": htu, "iat": int(self._clock())}
        nonce = nonce if nonce is not None else self._nonces.get(htu)
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
        return f"{signing_input.decode('ascii')}.{_b64url(self._sign(signing_input))}"

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        # JWS ES256 is the raw r || s (RFC 7518 §3.4), cryptography gives DER
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"DPoPKey({self.algorithm}, jkt={self.thumbprint})"
