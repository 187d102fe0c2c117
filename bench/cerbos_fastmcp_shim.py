"""cerbos-fastmcp 0.1.1 (PyPI), made to import and run against the installed fastmcp 4 / mcp 2.

It was written for fastmcp 2.12 and the mcp 1.x SDK. Three things broke since, and this
shim changes nothing else (its authorization logic runs as published):

- `fastmcp.tools.tool` (where it imports `Tool`, for type hints only) is now
  `fastmcp.tools.base`: aliased in `sys.modules` before the import.
- `mcp.McpError(ErrorData)` is now `mcp.MCPError(code, message, data)`: `mcp.McpError` is
  set to a subclass taking the old single `ErrorData` argument.
- Its `on_initialize` awaits the rest of the chain and returns None; fastmcp 4 answers the
  client's `initialize` with what the middleware returns, so None broke every session.
  `CerbosFastMCPMiddleware.on_initialize` runs the original and returns the chain's result.

Install it with `pip install cerbos-fastmcp==0.1.1 --no-deps` (its metadata pins nothing
newer; `--no-deps` keeps pip from touching fastmcp or cerbos).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import fastmcp.tools.base
import mcp
import mcp_types as mt
from fastmcp.server.auth import AccessToken
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.types import ErrorData

VERSION = "0.1.1"


class McpError(mcp.MCPError):
    """mcp 1.x's `McpError(error: ErrorData)` on top of mcp 2's `MCPError`."""

    def __init__(self, error: ErrorData) -> None:
        super().__init__(error.code, error.message, error.data)


def _load() -> type[Any]:
    sys.modules.setdefault("fastmcp.tools.tool", fastmcp.tools.base)
    if not hasattr(mcp, "McpError"):
        mcp.McpError = McpError  # type: ignore[attr-defined]
    module = importlib.import_module("cerbos_fastmcp.middleware")
    installed = importlib.import_module("cerbos_fastmcp").__version__
    if installed != VERSION:
        raise RuntimeError(f"the shim is for cerbos-fastmcp {VERSION}, found {installed}")
    middleware: type[Any] = module.CerbosAuthorizationMiddleware
    return middleware


if TYPE_CHECKING:  # what the bench uses of it; the package's own hints predate fastmcp 4

    class _Original(Middleware):
        def __init__(self, cerbos_host: str | None = None, *,
                     principal_builder: Callable[[AccessToken], Any],
                     resource_kind: str | None = None) -> None: ...
else:
    _Original = _load()


class CerbosFastMCPMiddleware(_Original):
    """cerbos-fastmcp's `CerbosAuthorizationMiddleware`, with its initialize result kept."""

    async def on_initialize(
        self, context: MiddlewareContext[mt.InitializeRequest],
        call_next: CallNext[mt.InitializeRequest, mt.InitializeResult | None],
    ) -> mt.InitializeResult | None:
        result: mt.InitializeResult | None = None

        async def keep(context: MiddlewareContext[mt.InitializeRequest]
                       ) -> mt.InitializeResult | None:
            nonlocal result
            result = await call_next(context)
            return result

        await super().on_initialize(context, keep)
        return result
