"""The agent side of agent-broker: get and renew agent tokens, from any Python agent.

    from fastmcp import Client
    from broker.client import TokenExchangeAuth

    auth = TokenExchangeAuth(subject_token=get_id_token, client_id="research-agent",
                             client_secret=secret, broker="http://127.0.0.1:8400",
                             resource="http://127.0.0.1:8401/mcp", scope="crm:read")
    async with Client("http://127.0.0.1:8401/mcp", auth=auth) as mcp: ...

With `dpop=True` (or a `DPoPKey`), tokens are bound to a key the agent holds (RFC 9449).
It imports only httpx (and httpx2 when present), cryptography and the standard library, never
the broker's server code, so agents depend on nothing they do not use.
"""

from broker.client.auth import SubjectTokenSource, TokenExchangeAuth
from broker.client.cache import refresh_at
from broker.client.discovery import (
    discover_broker,
    discover_broker_sync,
    discover_token_endpoint,
    discover_token_endpoint_sync,
    parse_www_authenticate,
    resource_metadata_from,
    well_known_url,
)
from broker.client.dpop import DPoPKey
from broker.client.errors import DiscoveryError, TokenExchangeError
from broker.client.exchange import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    JWT_TYPE,
    AssertionSource,
    AuthMethod,
    ClientCredentials,
    ExchangedToken,
    exchange_token,
    exchange_token_sync,
    token_type_urn,
)
from broker.client.peek import decode_unverified

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "ID_TOKEN_TYPE",
    "JWT_TYPE",
    "AssertionSource",
    "AuthMethod",
    "ClientCredentials",
    "DPoPKey",
    "DiscoveryError",
    "ExchangedToken",
    "SubjectTokenSource",
    "TokenExchangeAuth",
    "TokenExchangeError",
    "decode_unverified",
    "discover_broker",
    "discover_broker_sync",
    "discover_token_endpoint",
    "discover_token_endpoint_sync",
    "exchange_token",
    "exchange_token_sync",
    "parse_www_authenticate",
    "refresh_at",
    "resource_metadata_from",
    "token_type_urn",
    "well_known_url",
]
