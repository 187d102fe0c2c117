"""Cerbos unreachable or hung: nothing is listed and nothing is allowed."""

from __future__ import annotations

import time

import pytest
from fastmcp import Client

from mcp_plugin.testing import FakeBroker
from tests.e2e.clients import CLIENT_KINDS, connect
from tests.e2e.conftest import CrmServer

pytestmark = pytest.mark.integration

WHO = {"roles": ["sales_manager"], "scopes": ["crm:read", "crm:write", "email:send"]}


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_cerbos_down_means_deny(
    crm_cerbos_down: CrmServer, broker: FakeBroker, kind: str
) -> None:
    token = broker.tokens.mint(audience=crm_cerbos_down.url, **WHO)
    async with connect(kind, crm_cerbos_down.url, token) as client:
        assert await client.tool_names() == []
        assert await client.call("get_contact", {"contact_id": "1"}) == (
            False, "Unknown tool: 'get_contact'"
        )


async def test_cerbos_down_hides_resources_and_prompts(
    crm_cerbos_down: CrmServer, broker: FakeBroker
) -> None:
    token = broker.tokens.mint(audience=crm_cerbos_down.url, **WHO)
    async with Client(crm_cerbos_down.url, auth=token) as client:
        assert await client.list_resources() == []
        assert await client.list_prompts() == []
        with pytest.raises(Exception, match="crm://contacts/1"):
            await client.read_resource("crm://contacts/1")


async def test_hung_cerbos_means_deny_within_the_timeout(
    crm_cerbos_hung: CrmServer, broker: FakeBroker
) -> None:
    token = broker.tokens.mint(audience=crm_cerbos_hung.url, **WHO)
    async with Client(crm_cerbos_hung.url, auth=token) as client:
        started = time.monotonic()
        assert await client.list_tools() == []
        assert time.monotonic() - started < 2.0
        result = await client.call_tool("get_contact", {"contact_id": "1"}, raise_on_error=False)
        assert result.is_error
