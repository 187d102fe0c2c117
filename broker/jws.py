"""Compact JWS checks shared by every token the broker reads: its own agent tokens, upstream
subject tokens and client assertions. Pure: no I/O, and time is a parameter.

`read_unverified` bounds size, ASCII and shape before any decoding (a JWE is refused) and is
only for choosing an issuer and a key. It decodes the two JSON segments itself, with PyJWT's
acceptance rules (tests/unit/broker/test_jws_reader.py), because PyJWT checks the base64url
alphabet one character at a time in Python, a visible share of an exchange's CPU when every
subject token is read twice before its verified decode (docs/performance.md). The signature
is checked later, by PyJWT, on every path. `check_time_claims` replaces PyJWT's time checks,
which read the system clock. Every failure is `TokenRejected`, whose message is a fixed reason for
logs, never a token value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

_MAX_NUMERIC_DATE = 2**53
KEY_CARRYING_HEADERS = ("jku", "x5u", "jwk", "x5c")
"""Refused, not just ignored (RFC 8725 §3.10): keys come from configuration only, and a
token that names its own key is either forged or from a signer we should not trust."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class TokenRejected(Exception):
    """A problem with the token itself (shape, header, signature, claims)."""


def read_unverified(token: str, *, max_length: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS before any check: only to choose an issuer and key.

    Size, ASCII and shape are checked before any decoding; a JWE (five parts) is refused,
    and so is a header with `jku`, `x5u`, `jwk` or `x5c`.
    """
    if len(token) > max_length:
        raise TokenRejected("too long")
    if not token.isascii():
        raise TokenRejected("not ASCII")
    if token.count(".") != 2:
        raise TokenRejected("not a compact JWS")
    head, body, signature = token.split(".")
    _segment(signature)  # checked, not decoded: shape only, as PyJWT would refuse it
    header = _json_object(_segment(head))
    # as PyJWT does here: a kid is a string, no unencoded payload, no critical extension
    # (PyJWT understands none that a token of ours or an upstream one may use)
    if not isinstance(header.get("kid", ""), str) or header.get("b64", True) is False or (
            "crit" in header):
        raise TokenRejected("malformed")
    if any(name in header for name in KEY_CARRYING_HEADERS):
        raise TokenRejected("header carries key material or a key URL")
    return header, _json_object(_segment(body))


def _segment(text: str) -> bytes:
    """One base64url segment, PyJWT's rules: no padding, or up to two `=` completing a
    multiple of four; the URL-safe alphabet only (the regex runs in C); canonical, i.e. no
    stray bits in the last character (it must re-encode to itself)."""
    stripped = text.rstrip("=")
    padding = len(text) - len(stripped)
    if padding > 2 or (padding and len(text) % 4) or len(stripped) % 4 == 1 or (
            not _BASE64URL.fullmatch(stripped)):
        raise TokenRejected("malformed")
    try:
        decoded = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise TokenRejected("malformed") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != stripped:
        raise TokenRejected("malformed")
    return decoded


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise TokenRejected("malformed") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed")
    return value


def check_time_claims(claims: Mapping[str, Any], *, now: float, leeway: float) -> int:
    """Check `exp` (required), `nbf` and `iat` against our clock, with leeway; return `exp`.

    PyJWT's own time checks read the system clock, so callers turn them off and use this.
    """
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise TokenRejected("exp missing")
    if exp <= now - leeway:
        raise TokenRejected("expired")
    for name in ("nbf", "iat"):
        value = _numeric_date(claims, name)
        if value is not None and value > now + leeway:
            raise TokenRejected(f"{name} in the future")
    return int(exp)


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # the range test also refuses NaN and infinities, which json.loads accepts
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 <= value < _MAX_NUMERIC_DATE
    ):
        raise TokenRejected(f"{name} is not a NumericDate")
    return float(value)
