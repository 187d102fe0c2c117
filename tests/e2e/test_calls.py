"""Allowed and denied calls, argument conditions, the agent chain, and step-up."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastmcp import Client

from tests.e2e.clients import CLIENT_KINDS, connect
from tests.e2e.conftest import CrmServer, Mint

pytestmark = pytest.mark.integration

REP = {"roles": ["sales_rep"], "scopes": ["crm:read", "crm:write", "email:send"]}
MANAGER = {"roles": ["sales_manager"], "scopes": ["crm:read", "email:send"]}


def _email(to: str) -> dict[str, str]:
    return {"to": to, "subject": "Quarterly review", "body": "See you Tuesday."}


CALLS = [
    pytest.param(REP, "get_contact", {"contact_id": "1"}, True, id="rep-reads"),
    pytest.param(REP, "add_note", {"contact_id": "2", "text": "called"}, True, id="rep-writes"),
    pytest.param(REP, "send_email", _email("bob@example.com"), True, id="internal-email"),
    pytest.param(REP, "send_email", _email("Bob@EXAMPLE.com"), True, id="internal-any-case"),
    pytest.param(REP, "send_email", _email("eve@evil.test"), False, id="external-email"),
    pytest.param(REP, "send_email", _email("eve@evil.test, bob@example.com"), False,
                 id="smuggled-recipient"),
    pytest.param(MANAGER, "send_email", _email("eve@evil.test"), True,
                 id="manager-external-email"),
    pytest.param(REP, "export_contacts", {}, False, id="rep-cannot-export"),
    pytest.param({"roles": ["sales_manager"], "scopes": ["crm:read", "crm:write"],
                  "actors": ["c", "b", "a"]}, "add_note", {"contact_id": "1", "text": "x"},
                 False, id="three-hops-cannot-write"),
    pytest.param({"roles": ["sales_manager"], "scopes": ["crm:read"],
                  "actors": ["c", "b", "a"]}, "list_deals", {}, True, id="three-hops-can-read"),
]


@pytest.mark.parametrize("kind", CLIENT_KINDS)
@pytest.mark.parametrize(("who", "tool", "arguments", "allowed"), CALLS)
async def test_calls(
    crm: CrmServer, mint: Mint, kind: str, who: dict[str, Any], tool: str,
    arguments: dict[str, Any], allowed: bool,
) -> None:
    async with connect(kind, crm.url, mint(**who)) as client:
        ok, text = await client.call(tool, arguments)
    assert ok is allowed, text
    if not allowed:
        assert text == f"Unknown tool: {tool!r}"


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_denied_and_unknown_are_indistinguishable(
    crm: CrmServer, mint: Mint, kind: str
) -> None:
    async with connect(kind, crm.url, mint(**REP)) as client:
        denied = await client.call("send_email", _email("eve@evil.test"))
        unknown = await client.call("send_emails", _email("eve@evil.test"))
    assert denied == (False, "Unknown tool: 'send_email'")
    assert unknown == (False, "Unknown tool: 'send_emails'")


async def test_admin_deletes_only_as_a_direct_agent(crm: CrmServer, mint: Mint) -> None:
    admin = {"roles": ["crm_admin"], "scopes": ["crm:read", "crm:delete"]}
    async with Client(crm.url, auth=mint(**admin, actors=["summarizer", "research-agent"])) as c:
        result = await c.call_tool("delete_contact", {"contact_id": "4"}, raise_on_error=False)
        assert result.is_error
    assert "4" in crm.store.contacts
    async with Client(crm.url, auth=mint(**admin)) as client:
        result = await client.call_tool("delete_contact", {"contact_id": "4"})
    assert result.data == {"deleted": "4"}
    assert "4" not in crm.store.contacts


async def test_missing_scope_gets_a_step_up_challenge(crm: CrmServer, mint: Mint) -> None:
    token = mint(roles=["sales_rep"], scopes=["crm:read"])
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "add_note", "arguments": {"contact_id": "1", "text": "x"}}}
    async with httpx.AsyncClient() as http:
        response = await http.post(crm.url, json=call, headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        })
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="crm:write"' in challenge
    assert f'resource_metadata="{crm.metadata_url}"' in challenge


async def test_no_step_up_for_a_role_that_could_never_call(crm: CrmServer, mint: Mint) -> None:
    async with connect("mcp-sdk", crm.url, mint(roles=["support"], scopes=["crm:read"])) as c:
        assert await c.call("add_note", {"contact_id": "1", "text": "x"}) == (
            False, "Unknown tool: 'add_note'"
        )
