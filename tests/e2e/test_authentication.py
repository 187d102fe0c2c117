"""Only agent tokens of our broker, for this server, valid now, get in; others get 401."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastmcp import Client

from mcp_plugin.testing import FakeBroker, TestKeyPair
from tests.e2e.clients import connect
from tests.e2e.conftest import CrmServer, Mint
from tests.support.mcp import INITIALIZE
from tests.support.mcp import MCP_HEADERS as HEADERS

pytestmark = pytest.mark.integration



def _tampered(mint: Mint) -> str:
    head, _, signature = mint(scopes=["crm:read"]).split(".")
    other = mint(scopes=["crm:read", "crm:delete"]).split(".")[1]
    return f"{head}.{other}.{signature}"


def _foreign(mint: Mint) -> str:
    """Right claims, signed by a key our broker never published."""
    return mint(key=TestKeyPair.generate())


BAD: list[object] = [
    pytest.param(lambda m: m(audience="http://127.0.0.1:1/mcp"), id="another-audience"),
    pytest.param(lambda m: m(claims={"iss": "http://other-broker.test"}), id="another-issuer"),
    pytest.param(lambda m: m(issued_at=1_600_000_000), id="expired"),
    pytest.param(_tampered, id="tampered"),
    pytest.param(_foreign, id="unknown-key"),
    pytest.param(lambda m: m(headers={"typ": "JWT"}), id="not-an-access-token"),
]


@pytest.mark.parametrize("make", BAD)
async def test_bad_tokens_get_401_invalid_token(
    crm: CrmServer, mint: Mint, make: Callable[[Mint], str]
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            crm.url, json=INITIALIZE, headers={**HEADERS, "Authorization": f"Bearer {make(mint)}"}
        )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"')
    assert f'resource_metadata="{crm.metadata_url}"' in challenge


async def test_missing_token_gets_401_pointing_at_the_metadata(crm: CrmServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(crm.url, json=INITIALIZE, headers=HEADERS)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{crm.metadata_url}"'
    )


async def test_token_of_another_broker_with_its_own_keys_is_refused(crm: CrmServer) -> None:
    other = FakeBroker("http://other-broker.test", audience=crm.url)
    async with httpx.AsyncClient() as http:
        response = await http.post(crm.url, json=INITIALIZE, headers={
            **HEADERS, "Authorization": f"Bearer {other.tokens.mint()}"})
    assert response.status_code == 401


async def test_protected_resource_metadata_names_the_broker(
    crm: CrmServer, broker: FakeBroker
) -> None:
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(crm.metadata_url)).json()
    assert metadata["resource"] == crm.url
    assert metadata["authorization_servers"] == [broker.issuer]
    assert "crm:read" in metadata["scopes_supported"]


@pytest.mark.parametrize("kind", ["fastmcp", "mcp-sdk"])
async def test_clients_cannot_connect_with_a_bad_token(
    crm: CrmServer, mint: Mint, kind: str
) -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - each client has its own error type
        async with connect(kind, crm.url, mint(issued_at=1_600_000_000)) as client:
            await client.tool_names()


async def test_good_token_connects(crm: CrmServer, mint: Mint) -> None:
    async with Client(crm.url, auth=mint(roles=["sales_rep"], scopes=["crm:read"])) as client:
        assert "get_contact" in [t.name for t in await client.list_tools()]
