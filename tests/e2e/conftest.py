"""End-to-end fixtures: the demo CRM served by uvicorn, a real Cerbos, a stand-in broker.

Cerbos comes from the session fixtures in tests/conftest.py (policies from <repo>/policies);
a missing Cerbos fails the test, never skips it. The broker's discovery endpoints are served
over real HTTP by `mcp_plugin.testing.run_broker`, which also mints broker-shaped tokens.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agent_broker_demo.crm_server import CrmStore, build_protected_server
from mcp_plugin.testing import Endpoint, FakeBroker, run_broker


@dataclass(frozen=True)
class CrmServer:
    url: str
    base_url: str
    store: CrmStore

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/oauth-protected-resource/mcp"


@pytest.fixture(scope="session")
def broker() -> Iterator[FakeBroker]:
    with run_broker() as fake:
        yield fake


def serve_crm(broker: FakeBroker, cerbos: str, **options: Any) -> Iterator[CrmServer]:
    endpoint = Endpoint()
    store = CrmStore()
    mcp = build_protected_server(
        broker=broker.issuer, resource=endpoint.url, cerbos=cerbos, redis_url=None,
        store=store, **options,
    )
    try:
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            yield CrmServer(endpoint.url, endpoint.base_url, store)
    finally:
        endpoint.close()


@pytest.fixture(scope="session")
def crm(broker: FakeBroker, cerbos_address: str) -> Iterator[CrmServer]:
    """The demo CRM, protected, against the session's real Cerbos."""
    yield from serve_crm(broker, cerbos_address)


@pytest.fixture(scope="session")
def crm_cerbos_down(broker: FakeBroker) -> Iterator[CrmServer]:
    """The demo CRM pointed at a port where no Cerbos listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    yield from serve_crm(broker, dead)


@pytest.fixture(scope="session")
def crm_cerbos_hung(broker: FakeBroker) -> Iterator[CrmServer]:
    """The demo CRM pointed at a listener that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield from serve_crm(broker, f"127.0.0.1:{sock.getsockname()[1]}", cerbos_timeout=0.3)


Mint = Callable[..., str]


@pytest.fixture(scope="session")
def mint(broker: FakeBroker, crm: CrmServer) -> Mint:
    """Mint an agent token for the CRM: `mint(roles=[...], scopes=[...], actors=[...])`."""

    def make(**kwargs: Any) -> str:
        kwargs.setdefault("audience", crm.url)
        return broker.tokens.mint(**kwargs)

    return make
