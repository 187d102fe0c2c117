"""HTTP-level step-up (MCP authorization spec, "Step-Up Authorization Flow"; RFC 6750 §3.1).

When a valid token lacks a scope that a tool declares (tag `scope:<name>`) and Cerbos says
the call WOULD be allowed with it, the POST carrying that `tools/call` is answered

    403  WWW-Authenticate: Bearer error="insufficient_scope", scope="<missing>",
                           resource_metadata="<RFC 9728 URL>", error_description="..."

before the MCP session sees it, so an OAuth-aware client can get a wider token and retry.
Only the MISSING scopes are named (clients union them with what they hold). The check has to
happen here, before dispatch: on a streamable HTTP POST the SSE response's 200 status is sent
before the tool handler runs, so nothing later can turn a refusal into a 403.

Cost on the common path: on the modern transport, whose `Mcp-Method`/`Mcp-Name` headers name
the tool, a look at the tool's remembered declared scopes, and the body is not read; otherwise
one substring test of the body, and for a `tools/call` one JSON parse and a tool lookup. Cerbos
is asked here only when a declared scope is missing.

Versions: the challenge is about the version the body pins (`_meta.fastmcp.version`), the one
FastMCP will run, so a pinned call its version allows is never refused for a newer version's
scopes. The header shortcut looks at the newest version only: a pinned version that declares
more than the newest is not challenged here, and its caller gets the same scopes named in the
tool error instead (`CerbosAuthorization.on_call_tool`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastmcp.server.auth import AccessToken
from fastmcp.utilities.versions import VersionSpec
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_plugin.dpop_auth import ALGS, bound_key
from mcp_plugin.param_headers import named_tool_call
from mcp_plugin.resolution import requested_version

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from mcp_plugin.authorization import CerbosAuthorization

logger = logging.getLogger("mcp_plugin.step_up")

MAX_INSPECTED_BODY = 1 << 20


def challenge_header(scopes: list[str], resource_metadata_url: str, description: str,
                     *, dpop: bool = False) -> str:
    """The 403 challenge; for a DPoP-bound token in the DPoP scheme, with the algorithms a new
    proof may use (RFC 9449 §7.1), so that the client asks for a wider token bound alike."""
    scheme, algs = ("DPoP", f'algs="{ALGS}", ') if dpop else ("Bearer", "")
    return (
        f'{scheme} error="insufficient_scope", scope="{" ".join(scopes)}", {algs}'
        f'resource_metadata="{resource_metadata_url}", error_description="{description}"'
    )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a tools/call body asks for: the tool, its arguments, the version it pins."""

    name: str
    arguments: Mapping[str, Any] | None
    version: VersionSpec | None


def tool_call_of(body: bytes) -> ToolCall | None:
    """The call if the body is one JSON-RPC tools/call request, else None."""
    if b"tools/call" not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        return None
    arguments = params.get("arguments")
    meta = params.get("_meta")
    return ToolCall(params["name"], arguments if isinstance(arguments, dict) else None,
                    requested_version(meta if isinstance(meta, dict) else None))


class StepUpChallenge:
    """ASGI middleware, installed after authentication so `scope["user"]` is set."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authorization: CerbosAuthorization,
        server: FastMCP[Any],
        mcp_path: str,
        resource_metadata_url: str,
    ) -> None:
        self.app = app
        self.authorization = authorization
        self.server = server
        self.mcp_path = mcp_path.rstrip("/") or "/"
        self.resource_metadata_url = resource_metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user") if scope["type"] == "http" else None
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or (scope["path"].rstrip("/") or "/") != self.mcp_path
            or not isinstance(user, AuthenticatedUser)
            or not isinstance(user.access_token, AccessToken)
        ):
            await self.app(scope, receive, send)
            return
        name = named_tool_call(Headers(scope=scope))
        if name is not None and not await self._lacks_scopes(user.access_token, name):
            await self.app(scope, receive, send)  # the common case: the body is not even read
            return
        body, more_body = await _read_body(receive)
        call = None if more_body else tool_call_of(body)
        if call is not None:
            scopes = await self._missing_scopes(user.access_token, call)
            if scopes:
                await self._send_challenge(send, scopes,
                                           dpop=bound_key(user.access_token) is not None)
                return
        await self.app(scope, _replay(body, more_body, receive), send)

    async def _lacks_scopes(self, token: AccessToken, name: str) -> bool:
        try:
            return await self.authorization.lacks_declared_scopes(self.server, token, name)
        except Exception as exc:  # noqa: BLE001 - then read the body and decide as before
            logger.warning("step-up pre-check failed (%s)", type(exc).__name__)
            return True

    async def _missing_scopes(self, token: AccessToken, call: ToolCall) -> list[str]:
        try:
            return await self.authorization.challenge_scopes(
                self.server, token, call.name, call.arguments, call.version)
        except Exception as exc:  # noqa: BLE001 - no hint then; the middleware still decides
            logger.warning("step-up check failed (%s); passing the call on", type(exc).__name__)
            return []

    async def _send_challenge(self, send: Send, scopes: list[str], *, dpop: bool) -> None:
        description = f"This call needs scope {' '.join(scopes)}"
        body = json.dumps({"error": "insufficient_scope", "error_description": description,
                           "scope": " ".join(scopes)}).encode()
        header = challenge_header(scopes, self.resource_metadata_url, description, dpop=dpop)
        await send({
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", header.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
        logger.info("step-up challenge: 403 insufficient_scope, scope=%s", " ".join(scopes))


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """Read the request body up to MAX_INSPECTED_BODY; True if more remains unread."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > MAX_INSPECTED_BODY:
            return b"".join(chunks), True


def _replay(body: bytes, more_body: bool, receive: Receive) -> Receive:
    """A receive that yields the already-read body first, then defers to the real one."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": more_body}
        return await receive()

    return replay
