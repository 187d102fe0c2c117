"""Lists cost one PDP round per chunk of 50, sent together; results keep their order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from fastmcp import Client, FastMCP

from mcp_plugin import CerbosPolicyPoint, CheckItem, Decision, Principal, ResourceRef, protect
from mcp_plugin.testing import Endpoint, FakeBroker

pytestmark = pytest.mark.integration

READER = Principal("alice", ("sales_rep", "user"), {
    "scopes": ["crm:read"], "agent": "a", "actors": ["a"], "session": "s", "depth": 1,
})


async def test_chunks_of_fifty_in_order(cerbos_address: str) -> None:
    pdp = CerbosPolicyPoint(cerbos_address, max_resources_per_request=50)
    names = ["get_contact", "delete_contact", "list_deals"] * 40  # 120 items, 3 chunks
    items = [CheckItem(ResourceRef("mcp_server", n, {"tags": []}), f"tools/list::{n}")
             for n in names]
    decisions = await pdp.check(READER, items)
    await pdp.aclose()
    assert [d.item.resource.id for d in decisions] == names
    assert [d.allowed for d in decisions] == [n != "delete_contact" for n in names]
    assert {d.request_id.rsplit("-", 1)[1] for d in decisions if d.request_id} == {"0", "1", "2"}
    assert all(d.policy == "resource.mcp_server.vdefault" for d in decisions)


class CountingPDP:
    def __init__(self, inner: CerbosPolicyPoint) -> None:
        self.inner = inner
        self.checks: list[int] = []

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        self.checks.append(len(items))
        return await self.inner.check(principal, items)


@pytest.fixture
def wide_server(cerbos_address: str) -> Iterator[tuple[str, FakeBroker, CountingPDP]]:
    endpoint = Endpoint()
    broker = FakeBroker(audience=endpoint.url)
    mcp: FastMCP[Any] = FastMCP("wide")
    for i in range(60):
        mcp.tool(lambda: "ok", name=f"tool_{i:02d}")
    mcp.tool(lambda contact_id: contact_id, name="get_contact")
    pdp = CountingPDP(CerbosPolicyPoint(cerbos_address))
    protect(mcp, broker=broker.issuer, resource=endpoint.url, cerbos=pdp,
            http_client=broker.http_client())
    with endpoint.serve(mcp.http_app(path=endpoint.path)):
        yield endpoint.url, broker, pdp
    endpoint.close()


async def test_a_61_tool_list_is_one_check(
    wide_server: tuple[str, FakeBroker, CountingPDP],
) -> None:
    url, broker, pdp = wide_server
    async with Client(url, auth=broker.tokens.mint(roles=["sales_rep"])) as client:
        pdp.checks.clear()
        tools = await client.list_tools()
    assert [t.name for t in tools] == ["get_contact"]
    assert pdp.checks == [61]
