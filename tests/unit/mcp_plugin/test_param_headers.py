"""The transport's Mcp-Param header check does not reveal hidden tools (param_headers.py).

A tool may mark arguments with `x-mcp-header`; the mcp SDK then refuses, with an HTTP 400
before dispatch, a modern `tools/call` whose `Mcp-Param-*` header disagrees with the body.
Only a caller who may list the tool may get that 400: for anyone else a hidden tool answers
exactly like a name that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import httpx
import pytest
from fastmcp import FastMCP
from pydantic import Field

from mcp_plugin import CheckItem, Decision, Principal
from mcp_plugin.param_headers import declares_header_parameters
from mcp_plugin.testing import FakeBroker
from tests.unit.mcp_plugin.conftest import serve_protected

REGION = Field(json_schema_extra={"x-mcp-header": "Region"})


class RegionPDP:
    """Tools need the scope in their `scope:` tag, and mallory may never route orders (so no
    step-up challenge tells her about route_order either); records every question."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        self.asked += [item.action for item in items]
        scopes = set(principal.attr["scopes"])
        return [Decision(item, self.allows(principal, item.resource.attr["tags"], scopes),
                         request_id="t") for item in items]

    @staticmethod
    def allows(principal: Principal, tags: list[str], scopes: set[str]) -> bool:
        needed = {t.removeprefix("scope:") for t in tags if t.startswith("scope:")}
        return needed <= scopes and not (principal.id == "mallory" and "orders:route" in needed)


@pytest.fixture
def server() -> Iterator[tuple[str, FakeBroker, RegionPDP]]:
    mcp = FastMCP("regions")

    @mcp.tool(tags={"scope:orders:route"})
    def route_order(region: Annotated[str, REGION], order: str) -> str:
        return f"{order} -> {region}"

    @mcp.tool(tags={"scope:orders:read"})
    def read_order(order: str) -> str:
        return order

    pdp = RegionPDP()
    with serve_protected(mcp, pdp, decision_cache_seconds=0) as (url, broker):
        yield url, broker, pdp


async def call(url: str, token: str, name: str, arguments: dict[str, Any],
               headers: dict[str, str]) -> httpx.Response:
    """A modern (2026-07-28) tools/call, as the SDK's clients send it."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta}}
    async with httpx.AsyncClient() as http:
        return await http.post(url, json=body, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name,
            **headers})


def answer(response: httpx.Response, name: str) -> tuple[int, str]:
    """Status and body, with the tool's name taken out."""
    return response.status_code, response.text.replace(name, "NAME")


async def test_a_mismatched_header_is_refused_for_who_may_see_the_tool(
    server: tuple[str, FakeBroker, RegionPDP],
) -> None:
    url, broker, pdp = server
    token = broker.tokens.mint(scopes=["orders:route"])
    wrong = await call(url, token, "route_order", {"region": "eu", "order": "7"},
                       {"Mcp-Param-Region": "us"})
    right = await call(url, token, "route_order", {"region": "eu", "order": "7"},
                       {"Mcp-Param-Region": "eu"})
    assert wrong.status_code == 400 and "Mcp-Param-Region" in wrong.text  # the SDK's own check
    assert right.status_code == 200 and "7 -> eu" in right.text
    assert pdp.asked == ["tools/list::route_order", "tools/list::route_order",
                         "tools/call::route_order"]


@pytest.mark.parametrize("region_header", ["us", "eu"])
async def test_a_hidden_tool_answers_like_an_unknown_one(
    server: tuple[str, FakeBroker, RegionPDP], region_header: str,
) -> None:
    url, broker, _ = server
    token = broker.tokens.mint(sub="mallory", scopes=["orders:read"])  # may not see route_order
    arguments = {"region": "eu", "order": "7"}
    hidden = await call(url, token, "route_order", arguments, {"Mcp-Param-Region": region_header})
    unknown = await call(url, token, "no_such_tool", arguments,
                         {"Mcp-Param-Region": region_header})
    assert answer(hidden, "route_order") == answer(unknown, "no_such_tool")
    assert hidden.status_code == 200 and "Unknown tool" in hidden.text


async def test_tools_without_header_parameters_cost_no_extra_question(
    server: tuple[str, FakeBroker, RegionPDP],
) -> None:
    url, broker, pdp = server
    token = broker.tokens.mint(scopes=["orders:read"])
    response = await call(url, token, "read_order", {"order": "7"}, {})
    assert response.status_code == 200 and '"isError":false' in response.text
    assert pdp.asked == ["tools/call::read_order"]


@pytest.mark.parametrize(("schema", "declares"), [
    ({"type": "object", "properties": {"a": {"type": "string"}}}, False),
    ({"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}, True),
    ({"properties": {"a": {"anyOf": [{"type": "null"}, {"x-mcp-header": "A"}]}}}, True),
    ({"$defs": {"Inner": {"properties": {"b": {"x-mcp-header": "B"}}}}}, True),
])
def test_declared_header_parameters_are_found_anywhere(schema: dict[str, Any],
                                                       declares: bool) -> None:
    assert declares_header_parameters(schema) is declares
