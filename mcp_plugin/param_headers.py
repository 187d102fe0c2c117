"""`Mcp-Param-*` header validation that does not tell a caller which hidden tools exist.

On the modern streamable HTTP transport (protocol 2026-07-28) a `tools/call` names its tool in
the `Mcp-Method`/`Mcp-Name` headers, and may copy arguments its tool's input schema marks with
`x-mcp-header` into `Mcp-Param-<Name>` headers for intermediaries to route on. The mcp SDK
checks those headers against the body before dispatch and answers a mismatch with a plain
HTTP 400, taking the schema from the server's `get_tool_input_schema` hook, which FastMCP
serves from one server-wide cache of every registered tool. Left alone, that 400 comes for a
tool the caller may not see and never for an unknown name: an oracle for which tools exist,
where the plugin answers both "Unknown tool".

So `protect` wraps the hook (`guard_input_schemas`): a schema that declares header parameters
is handed to the transport only when `ToolVisibilityCheck`, an ASGI middleware that runs
before the transport, has asked Cerbos that this caller may list the tool. Otherwise the
transport validates nothing and the call meets `CerbosAuthorization`'s not-found, as an
unknown name does. Tools without header parameters, nearly all of them, cost one dictionary
lookup: for them the hook's answer changes nothing a caller can observe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastmcp.server.auth import AccessToken
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    X_MCP_HEADER_KEY,
    decode_header_value,
)
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_plugin.principal import TOOLS_CALL, TOOLS_LIST

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from mcp_plugin.authorization import CerbosAuthorization

logger = logging.getLogger("mcp_plugin.param_headers")

SchemaLookup = Callable[[str], "dict[str, Any] | None"]

_visible_tool: ContextVar[str | None] = ContextVar("mcp_plugin_visible_tool", default=None)
"""The tool this request's caller may list, when ToolVisibilityCheck asked (else None)."""


def named_tool_call(headers: Headers) -> str | None:
    """The tool a modern `tools/call` names in its `Mcp-Method`/`Mcp-Name` headers, or None
    (the transport refuses a request whose headers and body disagree)."""
    if headers.get(MCP_METHOD_HEADER) != TOOLS_CALL:
        return None
    return decode_header_value(headers.get(MCP_NAME_HEADER)) or None


def declares_header_parameters(schema: Any) -> bool:
    """Whether `x-mcp-header` appears anywhere in a JSON schema (nested ones included)."""
    if isinstance(schema, dict):
        return X_MCP_HEADER_KEY in schema or any(
            declares_header_parameters(v) for v in schema.values())
    if isinstance(schema, list):
        return any(declares_header_parameters(v) for v in schema)
    return False


class HeaderParameterTools:
    """Which tools declare header parameters, remembered per schema object."""

    def __init__(self, lookup: SchemaLookup) -> None:
        self.lookup = lookup
        self._seen: dict[str, tuple[dict[str, Any], bool]] = {}

    def declares(self, name: str) -> tuple[dict[str, Any] | None, bool]:
        """(the schema the server has for `name`, whether it declares header parameters)."""
        schema = self.lookup(name)
        if schema is None:
            return None, False
        seen = self._seen.get(name)
        if seen is None or seen[0] is not schema:  # FastMCP replaces a schema, never edits it
            seen = (schema, declares_header_parameters(schema))
            if len(self._seen) < 10_000:  # registered names only, but bounded all the same
                self._seen[name] = seen
        return schema, seen[1]


def guard_input_schemas(mcp: FastMCP[Any]) -> HeaderParameterTools | None:
    """Wrap `mcp`'s `get_tool_input_schema` hook as the module docstring says; None if the
    server has no hook (the SDK then lists tools through the middleware, filtered already)."""
    server = mcp._mcp_server  # FastMCP's low-level server: the hook's owner (no public handle)
    lookup: SchemaLookup | None = getattr(server, "get_tool_input_schema", None)
    if lookup is None:
        return None
    tools = HeaderParameterTools(lookup)

    def authorized_schema(name: str) -> dict[str, Any] | None:
        schema, declares = tools.declares(name)
        if not declares or _visible_tool.get() == name:
            return schema
        return None  # not validated here: the call is refused as an unknown tool

    server.get_tool_input_schema = authorized_schema
    return tools


class ToolVisibilityCheck:
    """ASGI middleware before the transport: for a modern `tools/call` of a tool that declares
    header parameters, asks Cerbos whether the caller may list it (`tools/list::<name>`)."""

    def __init__(self, app: ASGIApp, *, authorization: CerbosAuthorization,
                 server: FastMCP[Any], tools: HeaderParameterTools) -> None:
        self.app = app
        self.authorization = authorization
        self.server = server
        self.tools = tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = (named_tool_call(Headers(scope=scope))
                if scope["type"] == "http" and scope["method"] == "POST" else None)
        if name is None or not self.tools.declares(name)[1]:
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        token = user.access_token if isinstance(user, AuthenticatedUser) else None
        visible = isinstance(token, AccessToken) and await self._may_list(token, name)
        reset = _visible_tool.set(name if visible else None)  # the transport runs in this context
        try:
            await self.app(scope, receive, send)
        finally:
            _visible_tool.reset(reset)

    async def _may_list(self, token: AccessToken, name: str) -> bool:
        try:
            tool = await self.authorization.tools.find(self.server, name)
            if tool is None:
                return False
            item = self.authorization.tool_item(tool, TOOLS_LIST)
            return (await self.authorization.decide(token, [item]))[0].allowed
        except Exception as exc:  # noqa: BLE001 - not visible then: headers go unchecked
            logger.warning("tool visibility check failed (%s)", type(exc).__name__)
            return False
