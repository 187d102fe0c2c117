"""OAuth 2.0 error responses (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707 §2, RFC 6750).

The core raises these; only the HTTP layer renders them. Each class carries a fixed,
client-safe description by default. Callers may pass a more specific description, but it
must never contain a token, secret, assertion or any value copied from one: those belong,
if anywhere, in a debug log line that names only the reason.
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    """Base class: one subclass per RFC error code."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    default_description: ClassVar[str] = "The request could not be processed."

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def to_body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"
    default_description = "The request is missing a parameter, repeats one, or is malformed."


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401
    default_description = "Client authentication failed."


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    default_description = "The subject token is invalid, expired, revoked or not trusted."


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    default_description = "The client is not allowed to use this grant or delegation."


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    default_description = "The grant type is not supported."


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_description = "None of the requested scopes can be granted."


class InvalidTarget(OAuthError):
    error = "invalid_target"
    default_description = "The resource is unknown or not allowed for this client."


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1; also used when a requested token type cannot be issued."""

    error = "unsupported_token_type"
    default_description = "The token type is not supported."


class InvalidDPoPProof(OAuthError):
    """RFC 9449 §5: the DPoP proof is missing where required, invalid, replayed, or made
    with another key than the one the subject token is bound to."""

    error = "invalid_dpop_proof"
    default_description = "The DPoP proof is missing or invalid."


class UseDPoPNonce(OAuthError):
    """RFC 9449 §8: the broker requires DPoP nonces and the proof carried none, or a stale
    one. The response's `DPoP-Nonce` header holds the nonce to sign into a new proof."""

    error = "use_dpop_nonce"
    default_description = "Resend with a new DPoP proof carrying the nonce in DPoP-Nonce."


class TemporarilyUnavailable(OAuthError):
    """A dependency (Redis, Cerbos, an upstream JWKS) did not answer in time: fail closed."""

    error = "temporarily_unavailable"
    status_code = 503
    default_description = "The service is temporarily unavailable; try again later."


class RequestTooLarge(InvalidRequest):
    status_code = 413
    default_description = "The request body is too large."


class DependencyUnavailable(Exception):
    """Raised by an edge (store, PDP, JWKS fetch) when it cannot answer in time.

    The grant turns it into TemporarilyUnavailable; it never reaches a client as-is.
    """


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: the bearer token of an admin request is missing, bad or expired."""

    error = "invalid_token"
    status_code = 401
    default_description = "The access token is missing, invalid or expired."


class AccessDenied(OAuthError):
    """Authenticated, but policy does not allow this admin action."""

    error = "access_denied"
    status_code = 403
    default_description = "You are not allowed to do this."


class NotFound(OAuthError):
    error = "not_found"
    status_code = 404
    default_description = "No such object, or you may not see it."
