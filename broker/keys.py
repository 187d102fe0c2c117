"""Signing keys: a keyring where the newest active key signs and every key that may still
verify a live token is published (the Fernet `MultiFernet` idea, with time windows).

A key's life, in seconds since the epoch:
  created ── activates_at ── (a newer key activates: retired) ── retired + max TTL + grace: gone
Between creation and activation a key is published but does not sign, so verifiers that
cache the JWKS learn it before the first token signed with it arrives. A retired key stays
published until no token it signed can still be valid.

The file is JSON written atomically with mode 0600; processes reload it when it changes,
so `agent-broker keys rotate` on a shared volume reaches every broker without a restart.
The clock is a parameter everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

Algorithm = Literal["EdDSA", "ES256"]
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

log = logging.getLogger(__name__)


class KeyFileError(Exception):
    """The keys file is unreadable or malformed; the message names the file, never key material."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    alg: Algorithm
    created_at: int
    activates_at: int
    private_key: PrivateKey = field(repr=False)
    public_key: PublicKey = field(repr=False)
    public_jwk: dict[str, Any] = field(repr=False)


def generate_key(alg: Algorithm, now: float, activate_in: int = 0) -> SigningKey:
    private: PrivateKey
    if alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = ec.generate_private_key(ec.SECP256R1())
    created = int(now)
    return _entry(private, alg, created, created + activate_in)


def _entry(private: PrivateKey, alg: Algorithm, created: int, activates: int) -> SigningKey:
    public = private.public_key()
    if alg == "EdDSA" and not isinstance(public, ed25519.Ed25519PublicKey):
        raise KeyFileError("an EdDSA entry must hold an Ed25519 key")
    if alg == "ES256" and not (
        isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    ):
        raise KeyFileError("an ES256 entry must hold a P-256 key")
    jwk: dict[str, Any]
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return SigningKey(kid, alg, created, activates, private, public, jwk)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): a kid that names the key itself."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Keyring:
    """Keys ordered by activation; `max_token_ttl + grace` bounds how long retired keys live."""

    def __init__(self, keys: Sequence[SigningKey], *, max_token_ttl: int, grace: int) -> None:
        if not keys:
            raise KeyFileError("a keyring needs at least one key")
        self.keys = tuple(sorted(keys, key=lambda k: (k.activates_at, k.created_at)))
        self.max_token_ttl = max_token_ttl
        self.grace = grace
        self._by_kid = {k.kid: k for k in self.keys}

    def signing_key(self, now: float) -> SigningKey:
        active = [k for k in self.keys if k.activates_at <= now]
        return active[-1] if active else self.keys[0]

    def _retired_at(self, index: int, now: float) -> int | None:
        later = [k.activates_at for k in self.keys[index + 1 :] if k.activates_at <= now]
        return later[0] if later else None

    def published(self, now: float) -> list[SigningKey]:
        out = []
        for i, key in enumerate(self.keys):
            retired = self._retired_at(i, now)
            if retired is None or retired + self.max_token_ttl + self.grace > now:
                out.append(key)
        return out

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self.published(now)]}

    def verification_key(self, kid: str, now: float) -> SigningKey | None:
        key = self._by_kid.get(kid)
        return key if key is not None and key in self.published(now) else None

    def rotated(self, alg: Algorithm, now: float, activate_in: int = 0) -> Keyring:
        """A new keyring with one more key and without keys no live token can need."""
        keys = [*self.published(now), generate_key(alg, now, activate_in)]
        return Keyring(keys, max_token_ttl=self.max_token_ttl, grace=self.grace)


# -- the file -----------------------------------------------------------------------------


def _serialize(ring: Keyring) -> str:
    entries = []
    for k in ring.keys:
        pem = k.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        entries.append({"kid": k.kid, "alg": k.alg, "created_at": k.created_at,
                        "activates_at": k.activates_at, "private_key_pem": pem.decode()})
    return json.dumps({"version": 1, "keys": entries}, indent=2) + "\n"


def _deserialize(text: str, path: Path, *, max_token_ttl: int, grace: int) -> Keyring:
    try:
        data = json.loads(text)
        entries = data["keys"]
        keys = []
        for e in entries:
            private = serialization.load_pem_private_key(e["private_key_pem"].encode(), None)
            if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
                raise KeyFileError(f"{path}: unsupported key type")
            keys.append(_entry(private, e["alg"], int(e["created_at"]), int(e["activates_at"])))
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path}: malformed keys file ({type(exc).__name__})") from None
    return Keyring(keys, max_token_ttl=max_token_ttl, grace=grace)


def write_keys_file(path: Path, ring: Keyring) -> None:
    """Atomic replace; the file is created 0600 and its folder 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_serialize(ring))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class KeyringFile:
    """The keyring behind a file: created on first use, reloaded when the file changes."""

    def __init__(self, path: Path, alg: Algorithm, *, max_token_ttl: int, grace: int,
                 reload_interval: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.path, self.alg, self._clock = path, alg, clock
        self._ttl, self._grace, self._interval = max_token_ttl, grace, reload_interval
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self.ring = self._load_or_create()

    def _load_or_create(self) -> Keyring:
        if not self.path.exists():
            ring = Keyring([generate_key(self.alg, self._clock())], max_token_ttl=self._ttl,
                           grace=self._grace)
            write_keys_file(self.path, ring)
            log.info("generated a new %s signing key in %s", self.alg, self.path)
        return self._read()

    def _read(self) -> Keyring:
        try:
            st = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyFileError(f"{self.path}: cannot read ({exc.strerror})") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s is readable by group or others; chmod 600 it", self.path)
        self._stamp = (st.st_mtime_ns, st.st_size)
        return _deserialize(text, self.path, max_token_ttl=self._ttl, grace=self._grace)

    def current(self, now: float) -> Keyring:
        """The keyring, re-read at most once per `reload_interval` if the file changed."""
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            try:
                st = self.path.stat()
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    self.ring = self._read()
            except (OSError, KeyFileError) as exc:
                log.error("keeping the loaded keys: %s", exc)
        return self.ring

    def rotate(self, now: float, activate_in: int = 0) -> SigningKey:
        self.ring = self._read().rotated(self.alg, now, activate_in)
        write_keys_file(self.path, self.ring)
        self._stamp = None
        return self.ring.keys[-1]

