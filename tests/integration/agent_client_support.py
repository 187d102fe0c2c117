"""A broker and the demo CRM whose resource URI is its real URL, so that RFC 9728 discovery
finds the metadata where the CRM serves it; and a log of what the agent sent to the broker."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from agent_broker_demo.crm_server import build_protected_server
from broker.client import DPoPKey, decode_unverified
from mcp_plugin.testing import Endpoint
from tests.integration.conftest import CRM, SIGNER_KEY, BrokerFactory, broker_config
from tests.integration.revocation_support import RevocationStack, start_stack
from tests.support.mcp import INITIALIZE, MCP_HEADERS

READ_TOOLS = ["get_contact", "list_deals", "search_contacts"]
REFUSAL_DEADLINE_S = 2.0


def registrations_for(resource: str) -> dict[str, Any]:
    """The test broker's resources and agents, with the CRM at `resource` instead of CRM."""
    base = broker_config("http://unused", redis_url="", cerbos_address="", oidc_issuer="",
                         keys_file=Path("unused"))
    text = json.dumps({"resources": base["resources"], "agents": base["agents"]})
    moved: dict[str, Any] = json.loads(text.replace(CRM, resource))
    return moved


@dataclass
class AgentStack:
    stack: RevocationStack
    crm: str  # the CRM's URL, which is also its resource URI

    @property
    def broker(self) -> str:
        return self.stack.broker.url

    def refused(self, token: str, dpop: DPoPKey | None = None) -> None:
        """Wait until the CRM refuses `token` (a revocation reaches it through Redis); a token
        bound to `dpop` goes with the DPoP scheme and a fresh proof each time."""
        deadline = time.monotonic() + REFUSAL_DEADLINE_S

        def headers() -> dict[str, str]:
            if dpop is None:
                return {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
            return {**MCP_HEADERS, "Authorization": f"DPoP {token}",
                    "DPoP": dpop.proof("POST", self.crm, access_token=token)}

        while httpx.post(self.crm, json=INITIALIZE, headers=headers(),
                         trust_env=False).status_code != 401:
            if time.monotonic() > deadline:
                pytest.fail("the CRM still accepts a revoked token")
            time.sleep(0.02)

    def revoke(self, **target: str) -> None:
        response = self.stack.admin("POST", "/admin/revocations", self.stack.admin_token(),
                                    json=target)
        assert response.status_code == 201, response.text


@contextlib.contextmanager
def served_agent_stack(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
                       oidc_issuer: str, *, broker_options: dict[str, Any] | None = None,
                       **protect_options: Any) -> Iterator[AgentStack]:
    """A broker (configured with `broker_options` too) registering the agents for a served
    demo CRM protected with `protect_options` (e.g. dpop_required=True), on the shared Redis
    and Cerbos."""
    endpoint = Endpoint()
    try:
        stack = start_stack(start_broker, redis_url=redis_url, cerbos_address=cerbos_address,
                            oidc_issuer=oidc_issuer, **registrations_for(endpoint.url),
                            **(broker_options or {}))
        mcp = build_protected_server(broker=stack.broker.url, resource=endpoint.url,
                                     cerbos=cerbos_address, redis_url=redis_url,
                                     revocation_key_prefix=stack.prefix, **protect_options)
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            yield AgentStack(stack, endpoint.url)
    finally:
        endpoint.close()


@pytest.fixture(scope="module")
def agents(start_broker: BrokerFactory, redis_url: str, cerbos_address: str,
           oidc_issuer: str) -> Iterator[AgentStack]:
    with served_agent_stack(start_broker, redis_url, cerbos_address, oidc_issuer) as served:
        yield served


@dataclass
class BrokerLog:
    """What the agent's helper asked of the broker (and of the CRM's metadata): the request
    paths and the token responses, through httpx response hooks."""

    paths: list[str] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exchanges(self) -> int:
        return self.paths.count("/oauth2/token")

    def claims(self, index: int = -1) -> dict[str, Any]:
        return decode_unverified(self.grants[index]["access_token"])[1]

    def _record(self, response: httpx.Response) -> None:
        self.paths.append(response.request.url.path)
        if response.request.url.path == "/oauth2/token" and response.status_code == 200:
            self.grants.append(response.json())

    async def _arecord(self, response: httpx.Response) -> None:
        await response.aread()
        self._record(response)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(trust_env=False, timeout=10,
                                 event_hooks={"response": [self._arecord]})

    def sync_client(self) -> httpx.Client:
        def record(response: httpx.Response) -> None:
            response.read()
            self._record(response)

        return httpx.Client(trust_env=False, timeout=10, event_hooks={"response": [record]})


def signer_assertion(audience: str) -> str:
    """A private_key_jwt client assertion of signer-agent (RFC 7523)."""
    now = int(time.time())
    return jwt.encode({"iss": "signer-agent", "sub": "signer-agent", "aud": audience,
                       "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex},
                      SIGNER_KEY, algorithm="EdDSA", headers={"kid": "signer-1"})
