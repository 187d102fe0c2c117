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

With the decision cache on (mcp_plugin/decision_cache.py), asking the call's question again
would be a cache hit; the hand-over still matters: it keeps one round trip a call with the cache
off, and spares the call a second tool lookup.

The transport has checked that `Mcp-Method` and `Mcp-Name` equal the body's method and tool
name, or refused the request; the body is the one it parsed (Starlette caches it on the
request). Anything unexpected here means: no shortcut, the ordinary path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastmcp.server.dependencies import get_http_request
from fastmcp.tools.base import Tool
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, decode_header_value
from starlette.datastructures import Headers
from starlette.requests import Request

from mcp_plugin.pdp import Decision
from mcp_plugin.principal import TOOLS_CALL, Principal

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

    def keep(self, token: str, tool: Tool, decision: Decision, principal: Principal) -> None:
        setattr(self.http.state, _STATE_KEY, _Prefetched(token, tool, decision, principal))


def named_tool_call(headers: Headers) -> str | None:
    """The tool a modern `tools/call` names in its `Mcp-Method`/`Mcp-Name` headers, or None
    (the transport refuses a request whose headers and body disagree)."""
    if headers.get(MCP_METHOD_HEADER) != TOOLS_CALL:
        return None
    return decode_header_value(headers.get(MCP_NAME_HEADER)) or None


def current_tool_call() -> ToolCallRequest | None:
    """The HTTP request being served, if it is a modern `tools/call`."""
    try:
        http = get_http_request()
    except RuntimeError:  # not over HTTP (stdio, in-memory)
        return None
    name = named_tool_call(http.headers)
    return ToolCallRequest(http, name) if name else None


@dataclass(frozen=True, slots=True)
class _Prefetched:
    token: str
    tool: Tool
    decision: Decision
    principal: Principal


def take_prefetched(token: str, name: str) -> tuple[Tool, Decision, Principal] | None:
    """The tool the schema lookup found, the decision it obtained for calling it, and the
    principal it asked for (built from this same token), once.

    The caller must still check that the decision answers exactly its own question (same
    item: name, tags, annotations, arguments); the tool spares it a second lookup."""
    call = current_tool_call()
    if call is None:
        return None
    kept = getattr(call.http.state, _STATE_KEY, None)
    if not isinstance(kept, _Prefetched):
        return None
    delattr(call.http.state, _STATE_KEY)
    if kept.token != token or kept.tool.name != name:
        return None
    return kept.tool, kept.decision, kept.principal
