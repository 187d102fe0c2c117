"""What the core needs from the outside world, as small Protocols the edges implement.

The grant (`broker.exchange`) depends only on these; `broker.stores`, `broker.pdp` and
`broker.upstream` provide the real implementations, `broker.stores.memory` the in-memory
ones for unit tests. Every edge raises `DependencyUnavailable` when it cannot answer in time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.revocation import TokenFacts
from broker.sessions import SessionRecord

Clock = Callable[[], float]

TOKEN_MECHANICS = frozenset({
    "iss", "aud", "exp", "iat", "nbf", "jti", "nonce", "at_hash", "c_hash", "auth_time", "azp",
    "sid", "typ", "acr", "amr", "s_hash", "cnf",
})
"""Claims about a token rather than its user: useless to a policy and noisy in records."""
"""Seconds since the epoch; a parameter everywhere so tests pin time instead of sleeping."""


@dataclass(frozen=True, slots=True)
class SubjectIdentity:
    """A verified upstream subject token (an ID token or a JWT access token of a trusted issuer)."""

    issuer: str
    subject: str
    roles: tuple[str, ...]
    expires_at: int
    claims: Mapping[str, Any] = field(repr=False)
    issued_at: int = 0
    """The token's `iat`: revocations of the user or agent cover tokens issued before them."""

    def user_claims(self) -> dict[str, Any]:
        """The claims about the user (what Cerbos sees as principal attributes)."""
        return {k: v for k, v in self.claims.items() if k not in TOKEN_MECHANICS}


@dataclass(frozen=True, slots=True)
class DelegationQuestion:
    """One batched question to the PDP: which of `scopes` may `subject` delegate to `agent`?"""

    subject: str
    roles: tuple[str, ...]
    principal_attr: Mapping[str, Any]
    agent: str
    resource: str
    scopes: Sequence[str]
    actors: tuple[str, ...] = ()
    request_id: str | None = None
    """Sent as Cerbos's `requestId`: the exchange passes the id of the session it is opening,
    so Cerbos's decision log and the broker's session and audit record name the same id.
    None: the PDP client makes one up."""


class SubjectTokenValidator(Protocol):
    async def validate_subject_token(self, token: str) -> SubjectIdentity:
        """Verify an upstream token; raise InvalidGrant if it is not one we trust."""


class DelegationPolicy(Protocol):
    async def delegable_scopes(self, question: DelegationQuestion) -> frozenset[str]:
        """Return the subset of `question.scopes` the PDP allows; one round trip."""


class SessionStore(Protocol):
    async def open_session(self, record: SessionRecord, *, material: TokenFacts) -> None:
        """Persist the session, its indexes and its audit record before the token is returned:
        atomic, one round trip. Raise `Revoked` instead when `material` (the subject token
        the exchange stands on, with the new chain) is covered by a revocation."""

    async def get_session(self, sid: str) -> SessionRecord | None: ...


class ReplayCache(Protocol):
    async def first_use(self, key: str, expires_at: int) -> bool:
        """Record `key` until `expires_at`; True only the first time it is seen."""


class HealthCheck(Protocol):
    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the dependency answers in time."""
