"""A lean MCP client for timing: streamable HTTP over one keep-alive socket.

It speaks what the installed SDK's clients speak by default (FastMCP's `Client`, mcp 2.x):
the modern, stateless protocol revision (2026-07-28), where every request carries its
envelope (`_meta`: protocol version, client info and capabilities) and the `Mcp-Method` /
`Mcp-Name` headers, and no session is opened. `legacy=True` speaks 2025-06-18 instead
(`initialize`, then an `Mcp-Session-Id` on every request). The two differ on the server:
on the modern one, the SDK checks a tools/call's `Mcp-Param-*` headers against the tool's
input schema before dispatch (mcp_plugin/param_headers.py).

Why not FastMCP's `Client`: on two cores its own CPU per call (pydantic models, httpx, the
SSE parser, anyio streams) is a large share of a tool call's round trip, and it runs on the
same cores as the servers. A heavy client inflates every variant by the same constant, which
makes ratios look better than they are. This one writes each JSON-RPC request as bytes
(`bench.load.Connection`) and checks the answer with a substring test; `check` parses it
properly, for the untimed validation before a run.
"""

from __future__ import annotations

import json
from typing import Any

from bench.load import Connection, build_request

MODERN_VERSION = "2026-07-28"
LEGACY_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "agent-broker-bench", "version": "1"}


class McpError(RuntimeError):
    pass


def sse_message(body: bytes) -> dict[str, Any]:
    """The JSON-RPC message of a response: a JSON body or the `data:` of an SSE event."""
    text = body.decode()
    if text.lstrip().startswith("{"):
        message: dict[str, Any] = json.loads(text)
        return message
    for line in text.splitlines():
        if line.startswith("data:"):
            event: dict[str, Any] = json.loads(line[5:])
            return event
    raise McpError(f"no JSON-RPC message in {text[:200]!r}")


def modern_request(request_id: int, method: str, params: dict[str, Any] | None = None
                   ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A stateless (2026-07-28) JSON-RPC request and its headers: the envelope in `_meta`,
    the method (and tool name) in `Mcp-Method` / `Mcp-Name`."""
    params = {**(params or {}), "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {}}}
    headers = [("Mcp-Protocol-Version", MODERN_VERSION), ("Mcp-Method", method)]
    if method == "tools/call":
        headers.append(("Mcp-Name", str(params["name"])))
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return message, headers


class McpSession:
    """`open()`, then `request(method, params)`."""

    def __init__(self, host: str, port: int, path: str = "/mcp", token: str | None = None,
                 *, legacy: bool = False) -> None:
        self.host, self.port, self.path, self.legacy = host, port, path, legacy
        self._connection = Connection(host, port)
        self._headers = [("Accept", "application/json, text/event-stream"),
                         ("Content-Type", "application/json")]
        if token is not None:
            self._headers.append(("Authorization", f"Bearer {token}"))
        self._next_id = 1

    async def open(self) -> None:
        if not self.legacy:  # stateless: a discover checks the server speaks it
            await self.request("server/discover")
            return
        status, headers, body = await self._post({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {},
                       "clientInfo": CLIENT_INFO}})
        if status != 200:
            raise McpError(f"initialize answered {status}: {body[:300]!r}")
        session = headers.get("mcp-session-id")
        if session is not None:
            self._headers.append(("Mcp-Session-Id", session))
        self._headers.append(("Mcp-Protocol-Version", LEGACY_VERSION))
        status, _, body = await self._post({"jsonrpc": "2.0",
                                            "method": "notifications/initialized"})
        if status not in (200, 202):
            raise McpError(f"notifications/initialized answered {status}: {body[:300]!r}")

    async def request(self, method: str, params: dict[str, Any] | None = None) -> bytes:
        """Send one request, return the raw body; raises on a transport or JSON-RPC error
        (a substring test: cheap enough to leave in the timed path)."""
        if self.legacy:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
            if params is not None:
                message["params"] = params
            headers: list[tuple[str, str]] = []
        else:
            message, headers = modern_request(self._next_id, method, params)
        self._next_id += 1
        status, _, body = await self._post(message, headers)
        if status != 200 or b'"error"' in body or b'"isError":true' in body:
            raise McpError(f"{method} answered {status}: {body[:300]!r}")
        return body

    async def check(self, method: str, params: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """The parsed `result` of one request (untimed validation)."""
        result: dict[str, Any] = sse_message(await self.request(method, params))["result"]
        return result

    async def _post(self, message: dict[str, Any], headers: list[tuple[str, str]] | None = None
                    ) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps(message, separators=(",", ":")).encode()
        return await self._connection.send(build_request(
            "POST", self.host, self.port, self.path, headers=[*self._headers, *(headers or [])],
            body=body))

    async def aclose(self) -> None:
        await self._connection.aclose()
