"""mcp_plugin: verify agent-broker tokens and authorize every MCP operation with Cerbos.

    from mcp_plugin import protect
    protect(mcp, broker="http://127.0.0.1:8400", resource="http://127.0.0.1:8401/mcp",
            cerbos="127.0.0.1:3593")

`protect` wires the two parts that can also be used alone: `BrokerTokenVerifier` (a FastMCP
`TokenVerifier`) and `CerbosAuthorization` (a FastMCP `Middleware`). Test helpers live in
`mcp_plugin.testing`.
"""

from mcp_plugin.authorization import CerbosAuthorization
from mcp_plugin.claims import REQUIRED_CLAIMS, AgentClaims, ClaimsError, parse_claims
from mcp_plugin.dpop_auth import (
    BrokerAuthentication,
    MemoryProofReplayCache,
    ProofReplayCache,
    ProofReplayUnavailable,
)
from mcp_plugin.dpop_replay import RedisProofReplayCache
from mcp_plugin.jwks import BrokerKeys
from mcp_plugin.pdp import CerbosPolicyPoint, Decision, PolicyDecisionPoint
from mcp_plugin.principal import CheckItem, Principal, ResourceRef, build_principal
from mcp_plugin.protect import BrokerAuthProvider, Protection, protect
from mcp_plugin.revocation import (
    ManagedRevocationView,
    RevocationUnavailable,
    RevocationView,
    StaticRevocations,
    TokenFacts,
)
from mcp_plugin.revocation_feed import RedisRevocationFeed
from mcp_plugin.verifier import BrokerTokenVerifier

__all__ = [
    "REQUIRED_CLAIMS",
    "AgentClaims",
    "BrokerAuthProvider",
    "BrokerAuthentication",
    "BrokerKeys",
    "BrokerTokenVerifier",
    "CerbosAuthorization",
    "CerbosPolicyPoint",
    "CheckItem",
    "ClaimsError",
    "Decision",
    "ManagedRevocationView",
    "MemoryProofReplayCache",
    "PolicyDecisionPoint",
    "Principal",
    "ProofReplayCache",
    "ProofReplayUnavailable",
    "Protection",
    "RedisProofReplayCache",
    "RedisRevocationFeed",
    "ResourceRef",
    "RevocationUnavailable",
    "RevocationView",
    "StaticRevocations",
    "TokenFacts",
    "build_principal",
    "parse_claims",
    "protect",
]
