"""The whole story on real parts: a user's ID token from the OIDC provider, exchanged at the
real broker, used on the demo CRM protected by mcp_plugin, decided by the real Cerbos."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.clients import CLIENT_KINDS, connect
from tests.integration.conftest import CRM, SECRETS, Broker, basic, exchange_form
from tests.support.mcp import served_crm

READ_TOOLS = ["get_contact", "list_deals", "search_contacts"]
WRITE_TOOLS = ["add_note", "update_contact"]


@pytest.fixture(scope="module")
def crm_url(broker: Broker, cerbos_address: str) -> Iterator[str]:
    """The CRM listens on a free port but keeps the resource URI the broker knows it by."""
    with served_crm(broker=broker.url, cerbos=cerbos_address, resource=CRM) as url:
        yield url


def agent_token(broker: Broker, form: dict[str, str], headers: dict[str, str]) -> str:
    with broker.client() as http:
        response = http.post("/oauth2/token", data=form, headers=headers)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_exchanged_token_shows_only_what_user_agent_and_scope_allow(
        broker: Broker, id_tokens: dict, crm_url: str, kind: str) -> None:
    rep = agent_token(broker, exchange_form(id_tokens["alice"], scope="crm:read crm:write"),
                      basic("research-agent"))
    admin = agent_token(broker, exchange_form(id_tokens["carol"]), basic("research-agent"))
    async with connect(kind, crm_url, rep) as client:
        assert await client.tool_names() == sorted(READ_TOOLS + WRITE_TOOLS)
        ok, _ = await client.call("delete_contact", {"contact_id": "c1"})
        assert not ok
    async with connect(kind, crm_url, admin) as client:
        assert "delete_contact" in await client.tool_names()
        assert "export_contacts" in await client.tool_names()


async def test_a_sub_agent_sees_the_narrower_token(broker: Broker, id_tokens: dict,
                                                   crm_url: str) -> None:
    parent = agent_token(broker, exchange_form(id_tokens["alice"]), basic("research-agent"))
    child = agent_token(broker, exchange_form(
        parent, subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        client_id="summarizer-agent", client_secret=SECRETS["summarizer-agent"]), {})
    async with connect("fastmcp", crm_url, child) as client:
        assert await client.tool_names() == READ_TOOLS


def test_the_server_refuses_the_users_own_token(id_tokens: dict, crm_url: str) -> None:
    """No passthrough: only the broker's attenuated tokens open the MCP server."""
    response = httpx.post(crm_url, headers={"Authorization": f"Bearer {id_tokens['alice']}",
                                            "Accept": "application/json, text/event-stream"},
                          json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                          trust_env=False)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]
