"""protect(..., redis_url=...): the server follows the broker's revocations in Redis and
refuses a revoked token on its next request; without Redis it refuses every token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
import redis
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from agent_broker_demo.crm_server import CrmStore, build_protected_server
from mcp_plugin.testing import Endpoint, FakeBroker
from tests.support.mcp import initialize_status, served_crm
from tests.support.revocations import eventually, forget, revoke
from tests.support.services import free_port

pytestmark = pytest.mark.integration

WHO: dict[str, Any] = {"roles": ["sales_manager"], "scopes": ["crm:read"]}


def serve(broker: FakeBroker, cerbos: str, redis_url: str, prefix: str
          ) -> AbstractContextManager[str]:
    """The demo CRM, protected, following revocations under `prefix` (staleness 0.5 s)."""
    return served_crm(broker=broker.issuer, cerbos=cerbos, redis_url=redis_url,
                      store=CrmStore(), revocation_key_prefix=prefix,
                      revocation_staleness_seconds=0.5)


status = initialize_status


def feed_connections_of(client: redis.Redis) -> int:
    return sum(c["name"] == "mcp_plugin.revocation_feed" for c in client.client_list())


@pytest.fixture
def writer(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def test_revoked_tokens_are_refused(
    broker: FakeBroker, cerbos_address: str, redis_url: str, writer: redis.Redis
) -> None:
    prefix, now = f"e2e-{uuid.uuid4().hex[:8]}:", int(time.time())
    revoke(writer, prefix, ("jti:before-start", now + 600, now + 600))
    feed_connections = feed_connections_of(writer)
    try:
        with serve(broker, cerbos_address, redis_url, prefix) as url:
            assert feed_connections_of(writer) == feed_connections + 2  # started with it
            before = broker.tokens.mint(audience=url, jti="before-start", **WHO)
            assert status(url, before) == 401  # loaded at startup, before the first request
            token = broker.tokens.mint(audience=url, jti="live", **WHO)
            async with Client(url, auth=token) as client:
                assert await client.list_tools()
                revoke(writer, prefix, ("jti:live", now + 600, now + 600))
                await eventually(lambda: status(url, token) == 401)
                with pytest.raises(MCPError):
                    await client.list_tools()  # the same session, its next request
            other = broker.tokens.mint(audience=url, jti="other", **WHO)
            async with Client(url, auth=other) as client:
                assert await client.list_tools()
        await eventually(lambda: feed_connections_of(writer) == feed_connections)  # and closed
    finally:
        forget(writer, prefix)


async def test_without_redis_every_token_is_refused(
    broker: FakeBroker, cerbos_address: str
) -> None:
    with serve(broker, cerbos_address, f"redis://127.0.0.1:{free_port()}/0", "ab:") as url:
        assert status(url, broker.tokens.mint(audience=url, **WHO)) == 401


async def test_shutdown_closes_the_jwks_client_and_the_cerbos_channel(
        broker: FakeBroker, cerbos_address: str, redis_url: str) -> None:
    endpoint = Endpoint()
    mcp = build_protected_server(
        broker=broker.issuer, resource=endpoint.url, cerbos=cerbos_address,
        redis_url=redis_url, store=CrmStore(), revocation_key_prefix=f"t{uuid.uuid4().hex}:")
    protection = mcp.auth
    token = broker.tokens.mint(audience=endpoint.url, **WHO)
    try:
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            async with Client(endpoint.url, auth=token) as client:
                assert await client.list_tools()  # opens the JWKS client and the channel
            verifier = protection.verifier  # type: ignore[union-attr]
            assert verifier.keys._client is not None
    finally:
        endpoint.close()
    assert verifier.keys._client is None
    authorization = next(m for m in mcp.middleware if hasattr(m, "pdp"))
    assert authorization.pdp._channel is None
