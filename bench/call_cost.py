"""Per-call cost against the number of revocations (issue 4: the same tools/call p50 with 10
and with 1,000,000 revoked sessions; ratio <= 1.1).

Two demo CRM server processes, identical but for their revocation sets: each reads its own key
prefix, loaded straight into Redis before it starts (bench/revocations.py), so its feed learns
every entry in its first full sync. A canary entry in each set revokes a session of ours: a
server that refuses the canary and accepts our token has the whole set in memory (the feed
vouches only after reading the hash to the end).

Then one FastMCP client per server (streamable HTTP, one established session each) calls
`search_contacts`, the servers taking turns in batches in a rotating order, so drift in the
machine's load (other tenants, CPU frequency) falls on all alike. A third server, a twin of
the small one, is the control: its ratio to the small one (an A/A comparison) shows how far
the ratio moves by noise alone.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict, dataclass

from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from bench.mcp import pid_of, probe_client, rss_bytes, wait_status
from bench.measure import Measure
from bench.results import Figure, Goal
from bench.revocations import forget, load_hash
from bench.stack import Stack
from bench.stats import ms, percentile
from bench.tokens import Minted, broker_client, mint, user_id_token
from tests.integration.mcp_processes import McpServerProcess
from tests.support.services import stop_all

SMALL_PREFIX, LARGE_PREFIX = "bench-few:", "bench-many:"


@dataclass(frozen=True)
class Params:
    small: int = 10
    large: int = 1_000_000
    rounds: int = 42  # batches per server; the order rotates every round (a multiple of 3)
    batch: int = 40
    warmup: int = 100  # calls per server before measuring (imports, caches, JIT-less warmth)
    sync_timeout_s: float = 240.0


FULL = Params()
SMOKE = Params(large=1000, rounds=3, batch=3, warmup=3, sync_timeout_s=60.0)


@dataclass
class Outcome:
    samples: tuple[list[float], list[float], list[float]]  # small, large, control
    serving_s: tuple[float, float]  # from launch to the first accepted token, small and large
    large_rss: int


async def _calls(client: Client[StreamableHttpTransport], count: int,
                 into: list[float] | None) -> None:
    for _ in range(count):
        start = time.perf_counter()
        result = await client.call_tool("search_contacts", {"query": "a"})
        elapsed = time.perf_counter() - start
        if result.is_error:
            raise RuntimeError(f"search_contacts failed: {result.content}")
        if into is not None:
            into.append(elapsed)


def _launch(server: McpServerProcess, token: str, within: float) -> float:
    """Start `server` and wait until it accepts `token` (its feed vouches for a full sync):
    seconds from launch. One server at a time, so neither's start slows the other's."""
    start = time.monotonic()
    server.start()
    while server.status(token) != 200:
        if time.monotonic() - start > within:
            raise TimeoutError(f"{server.name} refused a valid token for {within:.0f} s "
                               f"(log {server.log_path})")
        time.sleep(0.05)
    return time.monotonic() - start


async def _measure(servers: list[McpServerProcess], params: Params, user: Minted,
                   canaries: list[Minted], serving: tuple[float, float]) -> Outcome:
    async with probe_client() as http:
        for server, canary in zip(servers, canaries, strict=True):
            await wait_status(http, server, canary.token, 401, 5)  # its set is in memory
    outcome = Outcome(([], [], []), serving, rss_bytes(pid_of(servers[1])))
    async with AsyncExitStack() as exits:
        clients = [await exits.enter_async_context(
                       Client(StreamableHttpTransport(s.url, auth=user.token)))
                   for s in servers]
        for client in clients:
            await _calls(client, params.warmup, None)
        n = len(clients)
        for round_ in range(params.rounds):
            for k in range(n):
                i = (round_ + k) % n
                await _calls(clients[i], params.batch, outcome.samples[i])
    return outcome


async def _tokens(stack: Stack, id_token: str) -> tuple[Minted, Minted, Minted]:
    async with broker_client(stack.broker.url) as broker:
        return (await mint(broker, id_token), await mint(broker, id_token),
                await mint(broker, id_token))


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    user, *canaries = asyncio.run(_tokens(stack, user_id_token(stack.oidc.issuer)))
    try:
        load_start = time.monotonic()
        load_hash(stack.redis_url, SMALL_PREFIX, params.small,
                  include=[f"sid:{canaries[0].sid}"])
        load_hash(stack.redis_url, LARGE_PREFIX, params.large,
                  include=[f"sid:{canaries[1].sid}"])
        load_s = time.monotonic() - load_start
        servers = [stack.mcp_server(p) for p in (SMALL_PREFIX, LARGE_PREFIX, SMALL_PREFIX)]
        with ExitStack() as stops:
            stops.callback(stop_all, servers)
            launched = [_launch(s, user.token, params.sync_timeout_s) for s in servers]
            outcome = asyncio.run(_measure(servers, params, user,
                                           [canaries[0], canaries[1], canaries[0]],
                                           (launched[0], launched[1])))
    finally:
        forget(stack.redis_url, SMALL_PREFIX, LARGE_PREFIX)  # 1M entries: free Redis' memory
    small, large, _ = outcome.samples
    p50_small, p50_large, p50_control = (percentile(s, 50) for s in outcome.samples)
    n = len(small)
    figures = [
        Figure("p50 small set", ms(p50_small), "ms", note=f"{params.small:,} revoked, {n} calls"),
        Figure("p50 large set", ms(p50_large), "ms", note=f"{params.large:,} revoked, {n} calls"),
        Figure("p50 ratio large/small", round(p50_large / p50_small, 3), "x", Goal(1.1)),
        Figure("p50 ratio control/small", round(p50_control / p50_small, 3), "x",
               note="A/A: two identical small-set servers; the ratio's noise floor"),
        Figure("p99 small set", ms(percentile(small, 99)), "ms"),
        Figure("p99 large set", ms(percentile(large, 99)), "ms"),
        Figure("launch to serving, small set", round(outcome.serving_s[0], 2), "s",
               note="process start to first accepted token; servers started one by one"),
        Figure("launch to serving, large set", round(outcome.serving_s[1], 2), "s",
               note="the difference is the feed's first full sync"),
        Figure("large set: server RSS", round(outcome.large_rss / 1e6, 1), "MB"),
        Figure("loading Redis", round(load_s, 2), "s", note="bench setup, not the plugin"),
    ]
    return {**asdict(params), "calls_per_server": n}, figures


MEASURE = Measure(
    name="call_cost",
    title="tools/call vs revocations",
    figures=("p50 small set", "p50 large set", "p50 ratio large/small",
             "p50 ratio control/small", "p99 small set",
             "p99 large set", "launch to serving, small set", "launch to serving, large set",
             "large set: server RSS", "loading Redis"),
    run=run,
)
