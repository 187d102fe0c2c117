"""Read a JWT's header and claims WITHOUT verifying it: for humans and logs of claims only.

Nothing read this way may decide access: anyone can write any claims into an unsigned token.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def _segment(text: str) -> dict[str, Any]:
    padded = text + "=" * (-len(text) % 4)
    try:
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise ValueError("not a JWT: a segment is not base64url JSON") from None
    if not isinstance(value, dict):
        raise ValueError("not a JWT: a segment is not a JSON object")
    return value


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS. The signature is NOT checked."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT: expected three dot-separated segments")
    return _segment(parts[0]), _segment(parts[1])
