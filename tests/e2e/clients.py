"""The two MCP clients the e2e tests drive: FastMCP's `Client` and the official SDK's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx2
from fastmcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

CLIENT_KINDS = ["fastmcp", "mcp-sdk"]


class McpClient(Protocol):
    async def tool_names(self) -> list[str]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """(ok, text): ok False when the server answered with an error."""
        ...


class FastMcpClient:
    def __init__(self, client: Client[Any]) -> None:
        self.client = client

    async def tool_names(self) -> list[str]:
        return sorted(t.name for t in await self.client.list_tools())

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        result = await self.client.call_tool(name, arguments, raise_on_error=False)
        text = " ".join(getattr(c, "text", "") for c in result.content)
        return not result.is_error, text


class SdkClient:
    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def tool_names(self) -> list[str]:
        return sorted(t.name for t in (await self.session.list_tools()).tools)

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        result = await self.session.call_tool(name, arguments)
        text = " ".join(getattr(c, "text", "") for c in result.content)
        return not result.is_error, text


@asynccontextmanager
async def connect(kind: str, url: str, token: str) -> AsyncIterator[McpClient]:
    if kind == "fastmcp":
        async with Client(url, auth=token) as client:
            yield FastMcpClient(client)
        return
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30.0) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield SdkClient(session)
