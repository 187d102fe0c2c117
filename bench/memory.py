"""Plugin memory for 100,000 live revocations (issue 4: under 50 MB), two ways:

- loaded at start: two identical demo CRM server processes, one whose revocation set (its own
  key prefix) holds 100,000 revoked sessions when it starts and one whose set is empty; both
  serve the same warm-up calls, then RSS(loaded) - RSS(empty). This includes what the first
  full sync (HSCAN, JSON parsing) left in the allocator.
- live: the empty server then receives 100,000 session revocations as the broker publishes
  them (one message each), the last one revoking our own token; once that token is refused,
  every message before it was applied (one subscription delivers in order), and RSS(after) -
  RSS(before) is the growth of the same process.

RSS is VmRSS from /proc/<pid>/status, read after the server went idle.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from bench.mcp import pid_of, probe_client, settled_rss, wait_status
from bench.measure import Measure
from bench.results import Figure, Goal
from bench.revocations import forget, load_hash, publish_sessions
from bench.stack import Stack, running
from bench.tokens import Minted, broker_client, mint, user_id_token
from tests.integration.mcp_processes import McpServerProcess

EMPTY_PREFIX, LOADED_PREFIX = "bench-mem0:", "bench-mem1:"
MB = 1_000_000  # the goal is in MB: 10^6 bytes reads higher than MiB, the safe side


@dataclass(frozen=True)
class Params:
    entries: int = 100_000
    warm_calls: int = 20
    within_s: float = 120.0


FULL = Params()
SMOKE = Params(entries=5_000, warm_calls=3, within_s=60.0)


@dataclass
class Outcome:
    empty: int
    loaded: int
    live: int


async def _warm(server: McpServerProcess, token: str, calls: int) -> None:
    """The same requests on each server, so their heaps differ only by the revocations."""
    async with Client(StreamableHttpTransport(server.url, auth=token)) as client:
        for _ in range(calls):
            await client.call_tool("search_contacts", {"query": "a"})


async def _measure(stack: Stack, empty: McpServerProcess, loaded: McpServerProcess,
                   params: Params, user: Minted) -> Outcome:
    async with probe_client() as http:
        for server in (empty, loaded):
            await wait_status(http, server, user.token, 200, params.within_s)
        for server in (empty, loaded):
            await _warm(server, user.token, params.warm_calls)
        rss_empty, rss_loaded = await asyncio.gather(settled_rss(pid_of(empty)),
                                                     settled_rss(pid_of(loaded)))
        await asyncio.to_thread(publish_sessions, stack.redis_url, EMPTY_PREFIX,
                                params.entries - 1, last_jti=user.jti)
        await wait_status(http, empty, user.token, 401, params.within_s)
        rss_live = await settled_rss(pid_of(empty))
    return Outcome(rss_empty, rss_loaded, rss_live)


async def _token(stack: Stack, id_token: str) -> Minted:
    async with broker_client(stack.broker.url) as broker:
        return await mint(broker, id_token)


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    user = asyncio.run(_token(stack, user_id_token(stack.oidc.issuer)))
    try:
        load_hash(stack.redis_url, LOADED_PREFIX, params.entries)
        empty, loaded = stack.mcp_server(EMPTY_PREFIX), stack.mcp_server(LOADED_PREFIX)
        with running([empty, loaded]):
            outcome = asyncio.run(_measure(stack, empty, loaded, params, user))
    finally:
        forget(stack.redis_url, EMPTY_PREFIX, LOADED_PREFIX)
    at_start, live = outcome.loaded - outcome.empty, outcome.live - outcome.empty
    goal = Goal(50.0, op="<")
    figures = [
        Figure("RSS growth, loaded at start", round(at_start / MB, 1), "MB", goal,
               note=f"{params.entries:,} entries, two processes compared"),
        Figure("RSS growth, live via pub/sub", round(live / MB, 1), "MB", goal,
               note=f"{params.entries:,} entries, one process before and after"),
        Figure("bytes per entry, live", round(live / params.entries), "B"),
        Figure("RSS with no revocations", round(outcome.empty / MB, 1), "MB",
               note="the whole demo server: Python, FastMCP, plugin"),
    ]
    return asdict(params), figures


MEASURE = Measure(
    name="memory",
    title="Plugin memory",
    figures=("RSS growth, loaded at start", "RSS growth, live via pub/sub",
             "bytes per entry, live", "RSS with no revocations"),
    run=run,
)
