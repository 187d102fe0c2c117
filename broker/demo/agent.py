"""An agent's MCP session for the demo: FastMCP's `Client` with a plain bearer token.

A plain bearer rather than `TokenExchangeAuth`, on purpose: the demo exchanges tokens itself
to show each exchange, and TokenExchangeAuth would answer a 401 (the revoked session) by
exchanging again, which is right for an agent and wrong for a demo measuring the refusal.

FastMCP reports an HTTP-level refusal (401 invalid_token, 403 insufficient_scope) only as a
generic MCP error, so the auth also records every refused response's status and
`WWW-Authenticate` challenge: that is what the demo shows.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from fastmcp import Client
from mcp.shared.exceptions import MCPError

CLIENT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Outcome:
    """What one MCP operation came to: `ok`, the text, and an HTTP refusal if there was one."""

    ok: bool
    text: str
    status: int | None = None
    challenge: str | None = None

    def challenge_param(self, name: str) -> str | None:
        """One parameter of the WWW-Authenticate challenge (`error`, `scope`...)."""
        found = re.search(rf'{name}="([^"]*)"', self.challenge or "")
        return found.group(1) if found else None


class RecordingBearer(httpx2.Auth):
    """Sends the bearer token; keeps (status, WWW-Authenticate) of every refused response."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.refusals: list[tuple[int, str | None]] = []

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request,
                                                                httpx2.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code >= 400:
            self.refusals.append((response.status_code,
                                  response.headers.get("www-authenticate")))


class AgentSession:
    """An open MCP session: `tool_names()`, `call(...)`. Get one with `connect`."""

    def __init__(self, client: Client[Any], auth: RecordingBearer) -> None:
        self.client, self.auth = client, auth

    async def tool_names(self) -> list[str]:
        return [tool.name for tool in await self.client.list_tools()]

    async def call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        seen = len(self.auth.refusals)
        try:
            result = await self.client.call_tool(name, arguments, raise_on_error=False)
        except MCPError as exc:
            return _refusal(self.auth, exc, seen)
        text = " ".join(getattr(part, "text", "") for part in result.content)
        return Outcome(not result.is_error, text)


def _refusal(auth: RecordingBearer, exc: MCPError, seen: int = 0) -> Outcome:
    """The HTTP refusal behind `exc`: the first one recorded after the `seen` earlier ones."""
    if len(auth.refusals) > seen:
        status, challenge = auth.refusals[seen]
        return Outcome(False, f"HTTP {status}", status, challenge)
    return Outcome(False, str(exc))


@asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[AgentSession]:
    """`async with connect(mcp_url, agent_token) as mcp:` an initialized MCP session."""
    auth = RecordingBearer(token)
    async with Client(url, auth=auth, timeout=CLIENT_TIMEOUT_S) as client:
        yield AgentSession(client, auth)


async def try_connect(url: str, token: str) -> Outcome:
    """Open (and close) a session: ok, or the HTTP refusal that stopped it."""
    auth = RecordingBearer(token)
    try:
        async with Client(url, auth=auth, timeout=CLIENT_TIMEOUT_S):
            return Outcome(True, "connected")
    except MCPError as exc:
        return _refusal(auth, exc)
