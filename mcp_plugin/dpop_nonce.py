"""DPoP nonces (RFC 9449 §8, §9): issued by a server, checked without any state.

DELIBERATE TWIN: `mcp_plugin/dpop_nonce.py` is a byte-identical copy (broker and mcp_plugin
never import each other); `tests/unit/test_dpop.py` fails when the two drift apart.

Why: a proof's `iat` is chosen by whoever holds the key, so someone who had the key for a
moment could sign proofs dated for later. When a server requires nonces, a proof must carry
one the server issued recently, which bounds that to the nonce's life.

A nonce is `base64url(period number (8 bytes) || HMAC-SHA256(secret, label, period)[:16])`.
No store: every replica configured with the same secret accepts what another issued, and
`label` (the URI the proofs are for) keeps one server's nonces useless at another that shares
the secret. A nonce is accepted in the period it was issued in and the ones either side (clock
skew between replicas), so it lives between one and two periods; servers send the current one
on every response (`DPoP-Nonce`), so a busy client always holds a fresh one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

MIN_SECRET_BYTES = 32
DEFAULT_PERIOD_SECONDS = 60
_MAC_BYTES = 16
_NONCE_CHARS = 32  # base64url of 8 + 16 bytes, no padding


class NonceIssuer:
    """Issues the current nonce for `label` and tells whether a nonce is acceptable."""

    def __init__(self, secret: bytes | str, label: str, *,
                 period: int = DEFAULT_PERIOD_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"a DPoP nonce secret needs at least {MIN_SECRET_BYTES} bytes")
        if period < 1:
            raise ValueError("period must be at least one second")
        self._key, self._label = key, label.encode()
        self._period, self._clock = period, clock
        self._issued: tuple[int, str] = (-1, "")

    def current(self) -> str:
        """The nonce of this period (computed once per period)."""
        number = int(self._clock() // self._period)
        if self._issued[0] != number:
            self._issued = (number, self._nonce(number))
        return self._issued[1]

    def accepts(self, nonce: object) -> bool:
        """Whether `nonce` (a proof's `nonce` claim, any JSON value) is one of ours, from this
        period or the one either side. Constant time in the MAC."""
        if not isinstance(nonce, str) or len(nonce) != _NONCE_CHARS or not nonce.isascii():
            return False
        try:
            raw = base64.b64decode(nonce, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return False
        number = int.from_bytes(raw[:8], "big")
        if abs(number - int(self._clock() // self._period)) > 1:
            return False
        return hmac.compare_digest(nonce, self._nonce(number))

    def _nonce(self, number: int) -> str:
        stamp = number.to_bytes(8, "big")
        mac = hmac.new(self._key, b"dpop-nonce\0" + self._label + b"\0" + stamp, hashlib.sha256)
        raw = stamp + mac.digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(raw).decode("ascii")
