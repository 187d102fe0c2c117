"""Compact JWS checks shared by every token the broker reads: its own agent tokens, upstream
subject tokens and client assertions. Pure: no I/O, and time is a parameter.

`read_unverified` bounds size, ASCII and shape before any decoding (a JWE is refused) and is
only for choosing an issuer and a key; `check_time_claims` replaces PyJWT's time checks, which
read the system clock. Every failure is `TokenRejected`, whose message is a fixed reason for
logs, never a token value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jwt import PyJWT
from jwt.exceptions import PyJWTError
from jwt.types import Options

_MAX_NUMERIC_DATE = 2**53
_UNVERIFIED_READER = PyJWT()
_UNVERIFIED: Options = {"verify_signature": False}


class TokenRejected(Exception):
    """A problem with the token itself (shape, header, signature, claims)."""


def read_unverified(token: str, *, max_length: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS before any check: only to choose an issuer and key.

    Size, ASCII and shape are checked before any decoding; a JWE (five parts) is refused.
    """
    if len(token) > max_length:
        raise TokenRejected("too long")
    if not token.isascii():
        raise TokenRejected("not ASCII")
    if token.count(".") != 2:
        raise TokenRejected("not a compact JWS")
    try:
        decoded = _UNVERIFIED_READER.decode_complete(token, options=_UNVERIFIED)
    except PyJWTError:
        raise TokenRejected("malformed") from None
    return decoded["header"], decoded["payload"]


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
