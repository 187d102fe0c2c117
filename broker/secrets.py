"""Client secrets at rest: scrypt hashes, verified in constant time.

Stored form: ``scrypt$ln=<log2 n>,r=<r>,p=<p>$<salt b64>$<digest b64>`` (unpadded url-safe
base64). scrypt makes a leaked config useless for guessing even weak secrets; the price is
~50 ms per verification, which `SecretVerifier` pays once per distinct secret by remembering
a keyed digest (HMAC with a per-process random key) of secrets it has already verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_LN, _R, _P = 15, 8, 1
_DIGEST_BYTES = 32
_PATTERN = re.compile(
    r"^scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})\$(?P<salt>[A-Za-z0-9_-]{16,})\$(?P<digest>[A-Za-z0-9_-]{40,})$"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, ln: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=1 << ln, r=r, p=p, maxmem=256 * 1024 * 1024,
        dklen=_DIGEST_BYTES,
    )


def hash_secret(secret: str, *, ln: int = _LN, r: int = _R, p: int = _P) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt$ln={ln},r={r},p={p}${_b64(salt)}${_b64(_scrypt(secret, salt, ln, r, p))}"


def generate_secret() -> str:
    """A 256-bit random client secret, url-safe."""
    return secrets.token_urlsafe(32)


def check_hash_format(stored: str) -> bool:
    match = _PATTERN.match(stored)
    return match is not None and 10 <= int(match["ln"]) <= 20


def check_secret(secret: str, stored: str) -> bool:
    """True if `secret` matches `stored`; constant time in the secret's content."""
    match = _PATTERN.match(stored)
    if match is None:
        return False
    salt, expected = _unb64(match["salt"]), _unb64(match["digest"])
    actual = _scrypt(secret, salt, int(match["ln"]), int(match["r"]), int(match["p"]))
    return hmac.compare_digest(actual, expected)


class SecretVerifier:
    """Verifies client secrets, paying scrypt once per (client, stored hash, secret).

    The cache holds HMAC-SHA256(process key, client_id, stored hash, secret): nothing that
    would help an attacker who reads process memory more than the stored hash itself does.
    """

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], bytes] = {}

    def _tag(self, client_id: str, stored: str, secret: str) -> bytes:
        msg = b"\x00".join((client_id.encode(), stored.encode(), secret.encode()))
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def check_cached(self, client_id: str, stored: str, secret: str) -> bool | None:
        """True if this exact secret was verified before; None if scrypt must decide."""
        known = self._verified.get((client_id, stored))
        if known is None:
            return None
        return hmac.compare_digest(known, self._tag(client_id, stored, secret)) or None

    def check(self, client_id: str, stored: str, secret: str) -> bool:
        cached = self.check_cached(client_id, stored, secret)
        if cached:
            return True
        if not check_secret(secret, stored):
            return False
        self._verified[(client_id, stored)] = self._tag(client_id, stored, secret)
        return True
