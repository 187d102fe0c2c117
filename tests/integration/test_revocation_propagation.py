"""Every grain of revocation, end to end: real broker, two MCP server processes, one Redis.

An admin revokes through the admin API; each MCP server (a separate OS process with its own
in-memory revocation feed) must refuse the affected tokens right after, and only those.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.shared.exceptions import MCPError

from tests.integration.mcp_processes import McpServerProcess
from tests.integration.revocation_support import Minted, RevocationStack, stack_fixture

PROPAGATION_DEADLINE_S = 2.0  # generous for a shared CI machine; `make bench` measures ms


stack = stack_fixture("module")


@pytest.fixture(scope="module")
def servers(stack: RevocationStack, redis_url: str, cerbos_address: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[McpServerProcess]]:
    work = tmp_path_factory.mktemp("mcp")
    procs = [McpServerProcess(work, broker=stack.broker.url, cerbos=cerbos_address,
                              redis_url=redis_url, prefix=stack.prefix) for _ in range(2)]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()


def refused_everywhere(servers: list[McpServerProcess], token: str) -> float:
    """Seconds until every server refuses `token`; fails past the deadline."""
    start = time.monotonic()
    pending = list(servers)
    while pending:
        pending = [s for s in pending if s.status(token) != 401]
        if pending and time.monotonic() - start > PROPAGATION_DEADLINE_S:
            pytest.fail(f"still accepted by {pending} after {PROPAGATION_DEADLINE_S} s")
    return time.monotonic() - start


def accepted_everywhere(servers: list[McpServerProcess], *tokens: Minted) -> bool:
    return all(s.status(t.token) == 200 for s in servers for t in tokens)


def revoke(stack: RevocationStack, **target: str) -> None:
    response = stack.admin("POST", "/admin/revocations", stack.admin_token(), json=target)
    assert response.status_code == 201, response.text


Grain = Callable[[RevocationStack, str, Minted], dict[str, str]]
GRAINS: dict[str, Grain] = {
    "token": lambda stack, user, m: {"token": m.jti},
    "session": lambda stack, user, m: {"session": m.sid},
    "user": lambda stack, user, m: {"user": user},
    "agent": lambda stack, user, m: {"agent": "summarizer-agent"},
    "user+agent": lambda stack, user, m: {"user": user, "agent": "summarizer-agent"},
}


@pytest.mark.parametrize("grain", list(GRAINS))
def test_each_grain_reaches_every_mcp_server(stack: RevocationStack,
                                             servers: list[McpServerProcess],
                                             grain: str) -> None:
    user, id_token = stack.login()
    # the target: a summarizer session delegated from research-agent (so agent and pair
    # revocations of the summarizer hit it), and bystanders that must keep working
    parent = stack.mint(id_token)
    target = stack.delegate(parent)
    _, other_login = stack.login()
    bystanders = [stack.mint(other_login)]
    if grain in ("token", "session"):
        bystanders.append(stack.mint(id_token))  # the same user's other session
    if grain != "user":
        bystanders.append(parent)
    assert accepted_everywhere(servers, target, *bystanders)

    revoke(stack, **GRAINS[grain](stack, user, target))
    refused_everywhere(servers, target.token)
    assert accepted_everywhere(servers, *bystanders)
    if grain == "agent":
        # an agent cutoff covers what is issued in its whole second: keep later tests clear
        time.sleep(1.05 - time.time() % 1)


def test_a_session_revocation_cascades_to_children_on_every_server(
        stack: RevocationStack, servers: list[McpServerProcess]) -> None:
    _, id_token = stack.login()
    root = stack.mint(id_token)
    children = [stack.delegate(root) for _ in range(3)]
    assert accepted_everywhere(servers, root, *children)
    revoke(stack, session=root.sid)
    for token in (root, *children):
        refused_everywhere(servers, token.token)


async def test_a_running_agent_s_next_tool_call_fails(stack: RevocationStack,
                                                       servers: list[McpServerProcess],
                                                       ) -> None:
    _, id_token = stack.login()
    minted = stack.mint(id_token)
    transport = StreamableHttpTransport(servers[0].url, auth=minted.token)
    async with Client(transport) as client:
        found = await client.call_tool("search_contacts", {"query": "a"})
        assert not found.is_error
        revoke(stack, session=minted.sid)
        refused_everywhere(servers, minted.token)
        with pytest.raises(MCPError):
            await client.call_tool("search_contacts", {"query": "a"})


def test_a_fresh_mcp_server_learns_every_current_revocation(
        stack: RevocationStack, redis_url: str, cerbos_address: str, tmp_path: Path) -> None:
    _, id_token = stack.login()
    revoked, kept = stack.mint(id_token), stack.mint(id_token)
    revoke(stack, session=revoked.sid)
    late = McpServerProcess(tmp_path, broker=stack.broker.url, cerbos=cerbos_address,
                            redis_url=redis_url, prefix=stack.prefix)
    late.start()
    try:
        assert late.status(revoked.token) == 401
        assert late.status(kept.token) == 200
    finally:
        late.stop()
