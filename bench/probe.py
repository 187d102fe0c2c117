"""A minimal HTTP/1.1 keep-alive prober for the revocation polls.

Why not httpx here: on the 2-core machine the bench is sized for, an httpx request costs about
2 ms of client CPU against 1.4 ms for the whole 401 round trip over a raw socket, and three
pollers share the bench's one core. The poll's round trip is the resolution of every
propagation sample, so the poller is a prebuilt MCP initialize sent on bench/load.py's raw
keep-alive `Connection`. Everything that is not timed keeps using httpx.
"""

from __future__ import annotations

import json

from bench.load import Connection, build_request
from tests.support.mcp import INITIALIZE

_BODY = json.dumps(INITIALIZE).encode()


class Prober:
    """One connection to one MCP server; `status(token)` sends an MCP initialize."""

    def __init__(self, host: str, port: int, path: str = "/mcp") -> None:
        self.host, self.port, self.path = host, port, path
        self._connection = Connection(host, port)
        self._requests: dict[str, bytes] = {}

    def _request(self, token: str) -> bytes:
        request = self._requests.get(token)
        if request is None:
            request = self._requests[token] = build_request(
                "POST", self.host, self.port, self.path, body=_BODY, headers=(
                    ("Accept", "application/json, text/event-stream"),
                    ("Content-Type", "application/json"),
                    ("Authorization", f"Bearer {token}")))
        return request

    async def status(self, token: str) -> int:
        status, _, _ = await self._connection.send(self._request(token))
        return status

    async def aclose(self) -> None:
        await self._connection.aclose()
