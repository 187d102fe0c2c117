"""One Cerbos round trip per `tools/call` on the modern streamable HTTP transport.

The mcp SDK's modern transport (protocol 2026-07-28) lists the caller's tools inside every
`tools/call` request that has arguments, through the FastMCP middleware, only to find the
called tool's input schema (`Mcp-Param-*` header validation; mcp/server/
_streamable_http_modern.py). Authorizing that listing like a client's cost a CheckResources
of every tool and a decision line per tool, and then the call was asked about again: two
round trips a call (issue 6's tool-call measure). So in that listing `CerbosAuthorization`

- keeps only the called tool (the transport looks for nothing else, and this listing never
  reaches the client), and
- asks about listing it AND calling it with the request's arguments in one CheckResources,
  then leaves the call's decision on the HTTP request, where `on_call_tool` takes it if its
  own question is exactly the same (same token, same item: name, tags, annotations,
  arguments); otherwise it asks Cerbos as usual.

The transport has checked that `Mcp-Method` and `Mcp-Name` equal the body's method and tool
name, or refused the request; the body is the one it parsed (Starlette caches it on the
request). Anything unexpected here means: no shortcut, the ordinary path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastmcp.server.dependencies import get_http_request
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value
from starlette.requests import Request

from mcp_plugin.pdp import Decision
from mcp_plugin.principal import TOOLS_CALL, CheckItem

_STATE_KEY = "mcp_plugin_prefetched_call"


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """The HTTP request of a modern `tools/call`, seen from inside it."""

    http: Request
    name: str

    def arguments(self) -> dict[str, Any] | None:
        """The call's arguments from the body the transport already read, or None."""
        body = getattr(self.http, "_body", None)  # cached by Request.body(); never read here
        if not isinstance(body, bytes):
            return None
        try:
            params = json.loads(body).get("params")
        except (ValueError, AttributeError):
            return None
        if not isinstance(params, dict) or params.get("name") != self.name:
            return None
        arguments = params.get("arguments")
        return arguments if isinstance(arguments, dict) else {} if arguments is None else None

    def keep(self, token: str, decision: Decision) -> None:
        setattr(self.http.state, _STATE_KEY, (token, decision))


def current_tool_call() -> ToolCallRequest | None:
    """The HTTP request being served, if it is a modern `tools/call`."""
    try:
        http = get_http_request()
    except RuntimeError:  # not over HTTP (stdio, in-memory)
        return None
    if http.headers.get(MCP_METHOD_HEADER) != TOOLS_CALL:
        return None
    name = decode_header_value(http.headers.get(MCP_NAME_HEADER))
    return ToolCallRequest(http, name) if name else None


def take_prefetched(token: str, item: CheckItem) -> Decision | None:
    """The decision the schema lookup obtained for exactly this question, once."""
    call = current_tool_call()
    if call is None:
        return None
    kept = getattr(call.http.state, _STATE_KEY, None)
    if kept is None:
        return None
    delattr(call.http.state, _STATE_KEY)
    kept_token, decision = kept
    if kept_token != token or decision.item != item:
        return None
    result: Decision = decision
    return result
