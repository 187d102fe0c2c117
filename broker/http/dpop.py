"""The DPoP proof of a token request (RFC 9449 §5): checked against the token endpoint's own
URI, and its `jti` recorded in Redis, so each proof is used once across every broker process.
With `dpop_nonce_secret` the proof must also carry a current nonce of ours (§8): without one
the answer is `use_dpop_nonce`, and every answer to a request with a proof carries the current
nonce in `DPoP-Nonce` (`request.state.dpop_nonce`, read by the response and the error handler).

The URI is the configured `issuer` + `/oauth2/token`, never the URL this process saw: behind a
proxy those differ, and the agent signs the URI it called, the public one. When Redis does not
answer, the request gets 503 and nothing is minted (a replay could not be ruled out).
"""

from __future__ import annotations

import logging

from fastapi import Request

from broker.dpop import InvalidProof, NonceRequired, validate_proof
from broker.errors import (
    DependencyUnavailable,
    InvalidDPoPProof,
    TemporarilyUnavailable,
    UseDPoPNonce,
)
from broker.http.services import BrokerServices

log = logging.getLogger(__name__)


async def proven_key(request: Request, services: BrokerServices) -> str | None:
    """The thumbprint of the key of the request's valid, unused DPoP proof; None without one."""
    values = request.headers.getlist("dpop")
    if not values:
        return None
    nonces = services.nonces
    if nonces is not None:  # every answer to a proof carries the current nonce (RFC 9449 §8)
        request.state.dpop_nonce = nonces.current()
    if len(values) > 1:
        raise InvalidDPoPProof("Send exactly one DPoP header.")
    try:
        proof = validate_proof(values[0], method=request.method, uri=services.token_endpoint,
                               now=services.clock(),
                               window=services.settings.dpop_proof_window_seconds,
                               nonce=nonces.accepts if nonces is not None else None)
    except NonceRequired:
        log.info("DPoP proof without a current nonce: asking for one")
        raise UseDPoPNonce() from None
    except InvalidProof as exc:
        log.info("DPoP proof refused: %s", exc)
        raise InvalidDPoPProof() from None
    try:
        first = await services.replay.first_use(f"dpop:{proof.jkt}:{proof.jti}",
                                                proof.expires_at)
    except DependencyUnavailable:
        raise TemporarilyUnavailable() from None
    if not first:
        log.warning("DPoP proof replayed (key %s)", proof.jkt)
        raise InvalidDPoPProof("The DPoP proof has been used before.")
    return proof.jkt
