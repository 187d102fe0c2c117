"""An MCP server that requires DPoP (`protect(..., dpop_required=True)`), found by discovery:
its 401 names the metadata (which says DPoP is required), and TokenExchangeAuth(dpop=True)
gets in, while the same agent without a key cannot."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastmcp import Client

from broker.client import TokenExchangeAuth
from tests.integration.agent_client_support import READ_TOOLS, served_agent_stack
from tests.integration.conftest import SECRETS, BrokerFactory
from tests.integration.revocation_support import RevocationStack
from tests.support.mcp import INITIALIZE, MCP_HEADERS


@pytest.fixture(scope="module")
def strict(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
           oidc_issuer: str) -> Iterator[tuple[RevocationStack, str]]:
    with served_agent_stack(start_broker, redis_url, cerbos_address, oidc_issuer,
                            dpop_required=True) as served:
        yield served.stack, served.crm


def auth(stack: RevocationStack, crm: str, id_token: str, **over: object) -> TokenExchangeAuth:
    options: dict = {"subject_token": id_token, "client_id": "research-agent",
                     "client_secret": SECRETS["research-agent"], "resource": crm,
                     "scope": "crm:read", "discover": True,
                     "allowed_brokers": [stack.broker.url]}
    return TokenExchangeAuth(**(options | over))


async def test_discovery_then_dpop_against_a_server_that_requires_it(
        strict: tuple[RevocationStack, str]) -> None:
    stack, crm = strict
    async with httpx.AsyncClient(trust_env=False) as http:
        challenge = await http.post(crm, json=INITIALIZE, headers=MCP_HEADERS)
    assert challenge.status_code == 401
    schemes = [c.split(" ", 1)[0] for c in challenge.headers.get_list("www-authenticate")]
    assert schemes == ["Bearer", "DPoP"]
    _, id_token = stack.login()
    async with Client(crm, auth=auth(stack, crm, id_token, dpop=True)) as client:
        assert sorted(t.name for t in await client.list_tools()) == READ_TOOLS
    refused = auth(stack, crm, id_token)
    async with httpx.AsyncClient(auth=refused, trust_env=False, timeout=10) as http:
        response = await http.post(crm, json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 401
