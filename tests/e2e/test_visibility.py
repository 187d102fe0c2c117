"""Different users, agents and scopes see different tools, resources and prompts.

The decisions come from the real Cerbos with policies/mcp_server.yaml, through the demo CRM
served by uvicorn, seen by FastMCP's Client and by the official MCP SDK client.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp import Client

from tests.e2e.clients import CLIENT_KINDS, connect
from tests.e2e.conftest import CrmServer, Mint

pytestmark = pytest.mark.integration

ALL_SCOPES = ["crm:read", "crm:write", "crm:delete", "crm:export", "email:send"]
READ = ["get_contact", "list_deals", "search_contacts"]
WRITE = ["add_note", "update_contact"]

CASES = [
    pytest.param({"roles": ["sales_rep"], "scopes": ["crm:read"]}, READ, id="rep-read"),
    pytest.param({"roles": ["sales_rep"], "scopes": ["crm:read", "crm:write", "email:send"]},
                 sorted([*READ, *WRITE, "send_email"]), id="rep-read-write-email"),
    pytest.param({"roles": ["sales_rep"], "scopes": ALL_SCOPES},
                 sorted([*READ, *WRITE, "send_email"]), id="rep-all-scopes-no-admin-tools"),
    pytest.param({"roles": ["sales_manager"], "scopes": ALL_SCOPES},
                 sorted([*READ, *WRITE, "export_contacts", "send_email"]), id="manager"),
    pytest.param({"roles": ["crm_admin"], "scopes": ALL_SCOPES},
                 sorted([*READ, *WRITE, "delete_contact", "export_contacts"]), id="admin"),
    pytest.param({"roles": ["crm_admin"], "scopes": ALL_SCOPES,
                  "actors": ["summarizer", "research-agent"]},
                 sorted([*READ, *WRITE, "export_contacts"]), id="admin-via-sub-agent-no-delete"),
    pytest.param({"roles": ["sales_manager"], "scopes": ALL_SCOPES,
                  "actors": ["c", "b", "a"]}, READ, id="three-hops-read-only"),
    pytest.param({"roles": ["support"], "scopes": ALL_SCOPES}, READ, id="support-read-only"),
    pytest.param({"roles": [], "scopes": ALL_SCOPES}, [], id="no-crm-role"),
    pytest.param({"roles": ["crm_admin"], "scopes": []}, [], id="no-scopes"),
]


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.parametrize(("who", "expected"), CASES)
async def test_tool_list_depends_on_user_agent_and_scopes(
    crm: CrmServer, mint: Mint, kind: str, who: dict[str, Any], expected: list[str]
) -> None:
    async with connect(kind, crm.url, mint(**who)) as client:
        assert await client.tool_names() == expected


async def test_resources_templates_and_prompts_follow_read_rights(
    crm: CrmServer, mint: Mint
) -> None:
    async with Client(crm.url, auth=mint(roles=["support"], scopes=["crm:read"])) as client:
        assert [str(r.uri) for r in await client.list_resources()] == ["crm://contacts"]
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates] == ["crm://contacts/{id}"]
        assert [p.name for p in await client.list_prompts()] == ["summarize_account"]
        contact = await client.read_resource("crm://contacts/3")
        assert "Alan Turing" in str(contact)
        prompt = await client.get_prompt("summarize_account", {"contact_id": "3"})
        assert "contact 3" in str(prompt)
    async with Client(crm.url, auth=mint(roles=["support"], scopes=["crm:write"])) as client:
        assert await client.list_resources() == []
        assert await client.list_resource_templates() == []
        assert await client.list_prompts() == []
