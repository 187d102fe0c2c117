"""The MCP server's local view of revocations, consulted on every request (contract §7).

The verifier asks `RevocationView.is_revoked(token)` after the signature and claims check,
for every request, so the view must answer from memory: no I/O on the request path. A view
that cannot vouch for its freshness (e.g. a feed that lost its source for too long) raises
`RevocationUnavailable`, and the verifier refuses the token: fail closed.

`StaticRevocations` is the in-memory reference view, filled by hand (tests, or a server with
no revocation feed). `RedisRevocationFeed` (mcp_plugin.revocation_feed) is the production view:
it mirrors the broker's revocations from Redis in the background (docs/revocation-protocol.md)
and fails closed when it has not heard from Redis within its staleness bound. Being a
`ManagedRevocationView`, it is started by the verifier before the first check (`start()` is
idempotent and runs in the serving event loop), and by `protect` with the server's lifespan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class RevocationUnavailable(Exception):
    """The view cannot tell whether a token is revoked; the token must be refused."""


@dataclass(frozen=True, slots=True)
class TokenFacts:
    """What revocation decisions can depend on, taken from a verified agent token."""

    jti: str
    session: str
    subject: str
    client_id: str
    actors: tuple[str, ...]
    issued_at: int


@runtime_checkable
class RevocationView(Protocol):
    def is_revoked(self, token: TokenFacts) -> bool:
        """True if the token must be refused. From memory; may raise RevocationUnavailable."""
        ...


@runtime_checkable
class ManagedRevocationView(RevocationView, Protocol):
    """A view with a background lifecycle (a subscription that keeps it current)."""

    async def start(self) -> None:
        """Begin following the source; idempotent; called in the loop that serves requests."""
        ...

    async def aclose(self) -> None:
        """Stop following and release connections; the view then fails closed."""
        ...


class StaticRevocations:
    """Revocations held in memory, as the admin API expresses them.

    One token (`jti`) and one session (`sid`; a feed expands a session to its descendants)
    are revoked for good. A user, an agent, or a user+agent pair is revoked for tokens issued
    at or before the revocation time, so a fresh login afterwards works again. An agent
    revocation also hits tokens where that agent is anywhere in the actor chain: its
    sub-agents act on its authority.
    """

    def __init__(self) -> None:
        self._jtis: set[str] = set()
        self._sessions: set[str] = set()
        self._users: dict[str, int] = {}
        self._agents: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], int] = {}

    def revoke_token(self, jti: str) -> None:
        self._jtis.add(jti)

    def revoke_sessions(self, sids: Iterable[str]) -> None:
        self._sessions.update(sids)

    def revoke_session(self, sid: str) -> None:
        self._sessions.add(sid)

    def revoke_user(self, sub: str, *, issued_before: int) -> None:
        self._users[sub] = max(issued_before, self._users.get(sub, issued_before))

    def revoke_agent(self, client_id: str, *, issued_before: int) -> None:
        self._agents[client_id] = max(issued_before, self._agents.get(client_id, issued_before))

    def revoke_user_agent(self, sub: str, client_id: str, *, issued_before: int) -> None:
        key = (sub, client_id)
        self._pairs[key] = max(issued_before, self._pairs.get(key, issued_before))

    def clear(self) -> None:
        for store in (self._jtis, self._sessions, self._users, self._agents, self._pairs):
            store.clear()

    def is_revoked(self, token: TokenFacts) -> bool:
        if token.jti in self._jtis or token.session in self._sessions:
            return True
        if token.issued_at <= self._users.get(token.subject, -1):
            return True
        agents = {token.client_id, *token.actors}
        for agent in agents:
            if token.issued_at <= self._agents.get(agent, -1):
                return True
            if token.issued_at <= self._pairs.get((token.subject, agent), -1):
                return True
        return False
