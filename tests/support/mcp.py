"""A protected demo CRM served in-process, and the one raw MCP request tests send to it.

`initialize_status` posts an MCP `initialize` with a bearer token: the verifier answers 401
before any MCP work, so it tells whether a token is accepted without a full client session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agent_broker_demo.crm_server import build_protected_server
from mcp_plugin.testing import Endpoint

MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "agent-broker-tests", "version": "1"}}}


@contextmanager
def served_crm(*, broker: str, cerbos: str, resource: str | None = None,
               redis_url: str | None = None, **options: Any) -> Iterator[str]:
    """The demo CRM behind mcp_plugin on a free port; yields its MCP URL.

    `resource` is the URI the broker knows it by (default: its real URL); `options` go to
    `build_protected_server` (revocation_key_prefix, store, ...).
    """
    endpoint = Endpoint()
    mcp = build_protected_server(broker=broker, resource=resource or endpoint.url,
                                 cerbos=cerbos, redis_url=redis_url, **options)
    try:
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            yield endpoint.url
    finally:
        endpoint.close()


def initialize_status(url: str, token: str, http: httpx.Client | None = None) -> int:
    """The HTTP status of an MCP initialize carrying this bearer token (200, or 401)."""
    # bytes: a non-ASCII token must reach the server as sent, not fail in the client
    headers: Any = {**MCP_HEADERS, "Authorization": ("Bearer " + token).encode()}
    if http is not None:
        return http.post(url, json=INITIALIZE, headers=headers).status_code
    return httpx.post(url, json=INITIALIZE, headers=headers, trust_env=False,
                      timeout=10).status_code
