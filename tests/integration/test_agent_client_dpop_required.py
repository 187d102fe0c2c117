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


NONCE_SECRETS = {"broker": "the-brokers-dpop-nonce-secret-32-bytes+",
                 "crm": "the-crms-own-dpop-nonce-secret-32-bytes+"}


@pytest.fixture(scope="module")
def with_nonces(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                oidc_issuer: str) -> Iterator[tuple[RevocationStack, str]]:
    with served_agent_stack(start_broker, redis_url, cerbos_address, oidc_issuer,
                            broker_options={"dpop_nonce_secret": NONCE_SECRETS["broker"]},
                            dpop_required=True, dpop_nonce_secret=NONCE_SECRETS["crm"]
                            ) as served:
        yield served.stack, served.crm


async def test_nonces_at_the_broker_and_the_server_cost_the_agent_nothing_to_handle(
        with_nonces: tuple[RevocationStack, str]) -> None:
    """Both ask for DPoP nonces (RFC 9449 §8, §9); the agent's helper answers each with one
    retry, and then keeps the server's fresh nonce from its responses."""
    stack, crm = with_nonces
    _, id_token = stack.login()
    seen: list[tuple[str, int, bool]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response.request.url.path, response.status_code,
                     "dpop-nonce" in response.headers))

    async with httpx.AsyncClient(auth=auth(stack, crm, id_token, dpop=True), trust_env=False,
                                 timeout=10, event_hooks={"response": [record]}) as http:
        for _ in range(3):
            response = await http.post(crm, json=INITIALIZE, headers=MCP_HEADERS)
            assert response.status_code == 200, response.text
    def at(path: str) -> list[tuple[int, bool]]:
        return [(status, nonce) for seen_path, status, nonce in seen if seen_path == path]

    # the server: discovery (no proof yet), a nonce asked for once, then three calls served,
    # each answer carrying a fresh nonce and the agent signing the one it was last sent (the
    # helper's exchanges go through its own client: the broker's side of this is
    # tests/security/test_dpop_nonces.py::test_the_agent_helper_retries_with_the_nonce_and_keeps_it)
    assert at(httpx.URL(crm).path) == [(401, False), (401, True)] + [(200, True)] * 3
