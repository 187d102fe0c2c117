"""What an agent catches when it cannot get a token. Messages never contain a token or secret."""

from __future__ import annotations

MAX_DESCRIPTION = 500  # a server's description is echoed, bounded: it is not ours to trust


class TokenExchangeError(Exception):
    """The broker refused the exchange, or no token could be obtained.

    `error` is the RFC 6749 §5.2 code the broker returned (`invalid_grant`, `invalid_client`,
    `invalid_scope`, `invalid_target`, `temporarily_unavailable`...), or a local code when the
    broker was not reached or answered nonsense: `connection_error`, `invalid_response`.
    `status_code` is the HTTP status when there was a response.
    """

    def __init__(self, error: str, description: str | None = None, *,
                 status_code: int | None = None) -> None:
        self.error = error
        self.error_description = (description or "")[:MAX_DESCRIPTION] or None
        self.status_code = status_code
        super().__init__(f"{error}: {self.error_description}" if self.error_description
                         else error)


class DiscoveryError(TokenExchangeError):
    """The broker could not be found or is not trusted; no token was sent anywhere.

    `error` is `broker_not_allowed` (the protected resource names a broker outside
    `allowed_brokers`, or one without TLS), `invalid_metadata` (RFC 8414 / RFC 9728 documents
    missing, malformed or inconsistent) or `connection_error`.
    """
