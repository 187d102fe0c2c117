"""The agent-side helper on real parts: the dev IdP's ID token, the real broker (Redis, Cerbos),
and the demo CRM behind mcp_plugin, driven by FastMCP's Client and by plain httpx."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import httpx2
import pytest
from fastmcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from broker.client import DiscoveryError, TokenExchangeAuth, TokenExchangeError
from tests.integration.agent_client_support import (
    READ_TOOLS,
    AgentStack,
    BrokerLog,
    agents,
    signer_assertion,
)
from tests.integration.conftest import SECRETS
from tests.support.mcp import INITIALIZE, MCP_HEADERS

__all__ = ["agents"]  # the module fixture, imported for pytest


def research_auth(agents: AgentStack, subject: object, log: BrokerLog, **over: object
                  ) -> TokenExchangeAuth:
    options: dict = {"subject_token": subject, "client_id": "research-agent",
                     "client_secret": SECRETS["research-agent"], "resource": agents.crm,
                     "scope": "crm:read", "broker": agents.broker,
                     "async_http_client": log.async_client(), "http_client": log.sync_client()}
    return TokenExchangeAuth(**(options | over))


async def test_fastmcp_client_lists_and_calls_with_one_exchange(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    calls = 0

    async def fresh_id_token() -> str:  # e.g. the agent host's session with the IdP
        nonlocal calls
        calls += 1
        return id_token

    log = BrokerLog()
    async with Client(agents.crm, auth=research_auth(agents, fresh_id_token, log)) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
        found = await client.call_tool("search_contacts", {"query": "ada"})
        deals = await client.call_tool("list_deals", {"contact_id": "1"})
    assert "Ada Lovelace" in str(found.content) and "d1" in str(deals.content)
    assert log.exchanges == 1 and calls == 1
    assert log.paths[0] == "/.well-known/oauth-authorization-server"
    assert log.claims()["scope"] == "crm:read"


async def test_mcp_sdk_client(agents: AgentStack) -> None:
    """The official SDK's streamable HTTP client, over an httpx2 client with the auth."""
    _, id_token = agents.stack.login()
    log = BrokerLog()
    async with (
        httpx2.AsyncClient(auth=research_auth(agents, id_token, log), timeout=30) as http,
        streamable_http_client(agents.crm, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
    assert sorted(t.name for t in tools.tools) == READ_TOOLS and log.exchanges == 1


async def test_concurrent_requests_share_one_exchange(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    async with httpx.AsyncClient(auth=research_auth(agents, id_token, log),
                                 trust_env=False, timeout=10) as http:
        responses = await asyncio.gather(*(http.post(agents.crm, json=INITIALIZE,
                                                     headers=MCP_HEADERS) for _ in range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert log.exchanges == 1


async def test_exchanges_again_shortly_before_expiry(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log, now = BrokerLog(), [1000.0]
    auth = research_auth(agents, id_token, log, clock=lambda: now[0])
    async with httpx.AsyncClient(auth=auth, trust_env=False, timeout=10) as http:
        assert (await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)).is_success
        lifetime = log.grants[0]["expires_in"]
        renew_after = lifetime - min(30, lifetime / 10)
        now[0] += renew_after - 1
        assert (await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)).is_success
        assert log.exchanges == 1
        now[0] += 1
        assert (await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)).is_success
    assert log.exchanges == 2
    assert log.claims(0)["sid"] != log.claims(1)["sid"]


async def test_a_revoked_session_costs_one_exchange_and_the_call_succeeds(
        agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    async with Client(agents.crm, auth=research_auth(agents, id_token, log)) as client:
        await client.list_tools()
        agents.revoke(session=log.claims()["sid"])
        agents.refused(log.grants[0]["access_token"])
        result = await client.call_tool("get_contact", {"contact_id": "2"})
        assert "Grace Hopper" in str(result.content)
        await client.list_tools()
    assert log.exchanges == 2
    assert log.claims(1)["sid"] != log.claims(0)["sid"]


async def test_a_revoked_user_cannot_exchange_again(agents: AgentStack) -> None:
    user, id_token = agents.stack.login()
    log = BrokerLog()
    async with httpx.AsyncClient(auth=research_auth(agents, id_token, log),
                                 trust_env=False, timeout=10) as http:
        assert (await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)).is_success
        agents.revoke(user=user)
        agents.refused(log.grants[0]["access_token"])
        with pytest.raises(TokenExchangeError) as refused:
            await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)
    assert refused.value.error == "invalid_grant" and refused.value.status_code == 400
    assert id_token not in str(refused.value) and log.exchanges == 2


async def test_fastmcp_surfaces_the_refused_exchange(agents: AgentStack) -> None:
    """FastMCP fails the pending call ("Connection closed") and raises the TokenExchangeError
    when the Client closes: an agent catches it around the `async with`."""
    user, id_token = agents.stack.login()
    log = BrokerLog()

    async def session() -> None:
        async with Client(agents.crm, auth=research_auth(agents, id_token, log)) as client:
            await client.list_tools()
            agents.revoke(user=user)
            agents.refused(log.grants[0]["access_token"])
            with pytest.raises(MCPError):
                await client.list_tools()

    with pytest.raises(TokenExchangeError) as refused:
        await session()
    assert refused.value.error == "invalid_grant"


async def test_discovers_an_allowed_broker_from_the_servers_401(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = research_auth(agents, id_token, log, broker=None, discover=True,
                         allowed_brokers=[agents.broker])
    async with Client(agents.crm, auth=auth) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
    assert auth.broker == agents.broker
    assert log.paths == ["/.well-known/oauth-protected-resource/mcp",
                         "/.well-known/oauth-authorization-server", "/oauth2/token"]


async def test_refuses_a_discovered_broker_that_is_not_allowed(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = research_auth(agents, id_token, log, broker=None, discover=True,
                         allowed_brokers=["https://broker.example.com"])
    async with httpx.AsyncClient(auth=auth, trust_env=False, timeout=10) as http:
        with pytest.raises(DiscoveryError) as refused:
            await http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS)
    assert refused.value.error == "broker_not_allowed"
    assert log.paths == ["/.well-known/oauth-protected-resource/mcp"]  # the token went nowhere


def test_plain_sync_httpx_from_threads_with_discovery(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = research_auth(agents, lambda: id_token, log, broker=None, discover=True,
                         allowed_brokers=[agents.broker])
    with httpx.Client(auth=auth, trust_env=False, timeout=10) as http, \
            ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: http.post(agents.crm, json=INITIALIZE,
                                                     headers=MCP_HEADERS).status_code, range(6)))
    assert statuses == [200] * 6
    assert log.exchanges == 1 and auth.token_endpoint == f"{agents.broker}/oauth2/token"


def test_sync_flow_revoked_session_recovers(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    with httpx.Client(auth=research_auth(agents, id_token, log), trust_env=False) as http:
        assert http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS).is_success
        agents.revoke(session=log.claims()["sid"])
        agents.refused(log.grants[0]["access_token"])
        assert http.post(agents.crm, json=INITIALIZE, headers=MCP_HEADERS).is_success
    assert log.exchanges == 2


async def test_a_sub_agent_redelegates_the_parents_token(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    parent_log, child_log = BrokerLog(), BrokerLog()
    parent = research_auth(agents, id_token, parent_log, scope="crm:read crm:write")
    child = TokenExchangeAuth(
        subject_token=parent.aget_token, subject_token_type="access_token",
        client_id="summarizer-agent", client_secret=SECRETS["summarizer-agent"],
        auth_method="client_secret_post", resource=agents.crm, broker=agents.broker,
        async_http_client=child_log.async_client())
    async with Client(agents.crm, auth=child) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
    claims = child_log.claims()
    assert claims["act"] == {"sub": "summarizer-agent", "act": {"sub": "research-agent"}}
    assert claims["scope"] == "crm:read"


async def test_private_key_jwt_client(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = TokenExchangeAuth(subject_token=id_token, client_id="signer-agent",
                             client_assertion=signer_assertion, resource=agents.crm,
                             broker=agents.broker, async_http_client=log.async_client())
    async with Client(agents.crm, auth=auth) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
    assert log.claims()["client_id"] == "signer-agent"


async def test_fastmcp_client_with_dpop_bound_tokens(agents: AgentStack) -> None:
    """RFC 9449 end to end: the token is bound to the helper's own key, every MCP request
    carries a fresh proof, and the same token sent as Bearer (as a thief would) is refused."""
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = research_auth(agents, id_token, log, dpop=True)
    async with Client(agents.crm, auth=auth) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
        found = await client.call_tool("search_contacts", {"query": "ada"})
    assert "Ada Lovelace" in str(found.content)
    assert log.exchanges == 1 and log.grants[0]["token_type"] == "DPoP"
    assert auth.dpop_key is not None
    assert log.claims()["cnf"] == {"jkt": auth.dpop_key.thumbprint}
    stolen = log.grants[0]["access_token"]
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        bearer = await http.post(agents.crm, json=INITIALIZE,
                                 headers={**MCP_HEADERS, "Authorization": f"Bearer {stolen}"})
    assert bearer.status_code == 401


async def test_a_revoked_bound_token_is_replaced_with_fresh_proofs(agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    log = BrokerLog()
    auth = research_auth(agents, id_token, log, dpop=True)
    async with Client(agents.crm, auth=auth) as client:
        await client.list_tools()
        agents.revoke(session=log.claims()["sid"])
        assert auth.dpop_key is not None
        agents.refused(log.grants[0]["access_token"], dpop=auth.dpop_key)
        result = await client.call_tool("get_contact", {"contact_id": "2"})
    assert "Grace Hopper" in str(result.content) and log.exchanges == 2
    assert log.claims(1)["cnf"] == log.claims(0)["cnf"]


async def test_a_sub_agent_redelegates_a_bound_token_only_with_its_key(
        agents: AgentStack) -> None:
    _, id_token = agents.stack.login()
    parent = research_auth(agents, id_token, BrokerLog(), dpop=True)
    child_options: dict = {
        "subject_token": parent.aget_token, "subject_token_type": "access_token",
        "client_id": "summarizer-agent", "client_secret": SECRETS["summarizer-agent"],
        "auth_method": "client_secret_post", "resource": agents.crm, "broker": agents.broker}
    log = BrokerLog()
    child = TokenExchangeAuth(**child_options, dpop=parent.dpop_key,
                              async_http_client=log.async_client())
    async with Client(agents.crm, auth=child) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
    assert parent.dpop_key is not None
    assert log.claims()["cnf"] == {"jkt": parent.dpop_key.thumbprint}
    stranger = TokenExchangeAuth(**child_options, dpop=True)
    with pytest.raises(TokenExchangeError) as refused:
        await stranger.aget_token()
    assert refused.value.error == "invalid_dpop_proof"
