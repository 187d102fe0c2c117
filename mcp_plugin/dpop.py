"""DPoP proofs (RFC 9449 §4.3): check one proof JWT, pure, the clock a parameter.

DELIBERATE TWIN: `mcp_plugin/dpop.py` is a byte-identical copy (broker and mcp_plugin never
import each other); `tests/unit/test_dpop.py` fails when the two drift apart.

`validate_proof` checks everything a single proof can show: one compact JWS of sane size;
`typ` dpop+jwt; `alg` EdDSA or ES256 (asymmetric only: never `none`, never HMAC); a `jwk`
header holding a PUBLIC key of a matching type, and the signature made with it; `htm` and
`htu` equal to this request's method and URI (compared without query and fragment); `iat`
within `window` seconds of `now`, either way; a `jti`; and, when an access token is presented
with it, `ath` = base64url(SHA-256(token)). Replay of the `jti` is the caller's to check: it
needs a store, and the returned `expires_at` says how long to remember it. Every failure is
`InvalidProof`, whose message is a fixed reason for logs, never a value from the proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

PROOF_TYPE = "dpop+jwt"
ALGORITHMS = ("EdDSA", "ES256")
MAX_PROOF_BYTES = 4096
MAX_JTI_LENGTH = 256
_KEY_TYPES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
_PUBLIC_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidProof(Exception):
    """The proof is missing, malformed, or does not match this request (log-only reason)."""


class NonceRequired(InvalidProof):
    """The proof is good but for its `nonce`: missing, stale or not this server's. The answer
    is `use_dpop_nonce` with a fresh nonce (RFC 9449 §8, §9), not `invalid_dpop_proof`;
    `jkt` names the proof's key, so a server that expects another key can say so first."""

    def __init__(self, reason: str, jkt: str) -> None:
        super().__init__(reason)
        self.jkt = jkt


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed every check but replay."""

    jkt: str
    """RFC 7638 SHA-256 thumbprint of its key: `cnf.jkt` of the tokens it binds."""
    jti: str
    expires_at: int
    """Until when its `jti` must be remembered: past it, `iat` is outside the window."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required public members, sorted, no whitespace."""
    members = _PUBLIC_MEMBERS.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise InvalidProof("jwk is not an OKP or EC public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """The `ath` claim for `token` (RFC 9449 §4.2); tokens are ASCII."""
    if not token.isascii():
        raise InvalidProof("the access token is not ASCII")
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def normalize_uri(uri: str) -> str:
    """Scheme, host and path of an http(s) URI for comparing `htu` (RFC 9449 §4.3 item 9,
    RFC 3986 §6.2.2-3): lower-case scheme and host, default port dropped, no query, no
    fragment, an empty path as `/`. Raises InvalidProof when it is not an http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise InvalidProof("htu is not a URI") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in _DEFAULT_PORTS or not host:
        raise InvalidProof("htu is not an absolute http(s) URI")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _header(proof: str) -> dict[str, Any]:
    if len(proof) > MAX_PROOF_BYTES or not proof.isascii() or proof.count(".") != 2:
        raise InvalidProof("not a compact JWS of acceptable size")
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.PyJWTError:
        raise InvalidProof("unreadable JOSE header") from None
    if str(header.get("typ", "")).lower() != PROOF_TYPE:
        raise InvalidProof("typ is not dpop+jwt")
    if "crit" in header or any(name in header for name in ("jku", "x5u", "x5c", "kid")):
        raise InvalidProof("header names a key other than by jwk, or has crit")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidProof("alg is not EdDSA or ES256")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidProof("no jwk header")
    if any(name in jwk for name in _PRIVATE_MEMBERS):
        raise InvalidProof("jwk holds private key material")
    if (jwk.get("kty"), jwk.get("crv")) != _KEY_TYPES[alg]:
        raise InvalidProof("jwk type does not match alg")
    return header


def validate_proof(
    proof: str,
    *,
    method: str,
    uri: str,
    now: float,
    window: int,
    access_token: str | None = None,
    nonce: Callable[[object], bool] | None = None,
) -> Proof:
    """Check `proof` for a `method` request to `uri` (the URI as this server knows itself,
    never as a proxy rewrote it). With `access_token`, `ath` must match it. With `nonce`
    (a `NonceIssuer.accepts`), the `nonce` claim must pass it, checked last: a proof wrong in
    any other way is `InvalidProof`, and only then `NonceRequired`."""
    header = _header(proof)
    jwk = header["jwk"]
    try:
        key = jwt.PyJWK(jwk, algorithm=header["alg"])
        claims: dict[str, Any] = jwt.decode(
            proof, key, algorithms=[header["alg"]],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "verify_iss": False, "require": []},
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:  # PyJWK on a bad jwk
        raise InvalidProof(f"signature or key invalid ({type(exc).__name__})") from None
    if claims.get("htm") != method:
        raise InvalidProof("htm does not match the request method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or not hmac.compare_digest(  # bytes: htu may be non-ASCII
            normalize_uri(htu).encode(), normalize_uri(uri).encode()):
        raise InvalidProof("htu does not match the request URI")
    iat = claims.get("iat")
    # `not <=`, not `>`: a NaN `iat` (JSON allows it) compares false with everything
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not abs(now - iat) <= window:
        raise InvalidProof("iat is missing or outside the accepted window")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidProof("jti is missing or too long")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(
                ath.encode(), access_token_hash(access_token).encode()):
            raise InvalidProof("ath does not match the access token")
    jkt = jwk_thumbprint(jwk)
    if nonce is not None and not nonce(claims.get("nonce")):
        raise NonceRequired("nonce is missing, stale or not ours", jkt)
    return Proof(jkt=jkt, jti=jti, expires_at=int(iat) + window + 1)
