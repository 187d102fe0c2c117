"""MCP over streamable HTTP, five servers side by side (issue 6 §2 and §3): the same tools
unprotected, with FastMCP's own token authentication only, behind mcp_plugin as shipped (its
1 s decision cache on), behind mcp_plugin with no decision cache, and behind cerbos-fastmcp
(bench/mcp_server.py), with the same Cerbos, policies and broker token.

- `tool_call`: the demo CRM's `search_contacts`, the same call again and again. Goal:
  mcp_plugin's p50 ≤ 1.25x the unprotected server's, and below cerbos-fastmcp's. The
  uncached plugin's figures show what a question not asked in the last second costs.
- `tools_list`: a 50-tool server, every tool visible to the caller. Goal, judged on the
  UNCACHED plugin (what the batching buys, not the cache): added latency (its p50 minus the
  unprotected p50) at least 10x below cerbos-fastmcp's, and one PDP round trip per list.

The five server processes (bench/mcp_server.py, both tool sets each) are started once and
shared by the two measures. Each server gets one client over one keep-alive connection
(bench/mcp_client.py: a lean client speaking the modern protocol revision, as the SDK's
clients do by default, so that the servers' costs are what differs); after a warm-up the
servers take turns in batches, in a rotating order, so drift in the machine's load falls on
all alike.
The servers' CPU time per request comes from /proc. PDP round trips are counted on Cerbos's
side (its `CheckResources` counter in /_cerbos/metrics) over requests sent to one server at a
time while nothing else asks Cerbos anything.
"""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from bench.mcp_client import McpSession
from bench.mcp_server import MANY_TOOLS, VARIANTS, BenchMcpServer, ToolSet, Variant
from bench.measure import Measure
from bench.proc import cpu_seconds
from bench.results import Figure, Goal
from bench.stack import BROKER_PREFIX, Stack
from bench.stats import ms, percentile
from bench.tokens import broker_client, mint, user_id_token

TRIPS = "round trips"
NAMES: dict[Variant, str] = {"plain": "unprotected", "authenticated": "authenticated only",
                             "plugin": "mcp_plugin",
                             "plugin-uncached": "mcp_plugin uncached",
                             "cerbos-fastmcp": "cerbos-fastmcp"}
PLUGINS: tuple[Variant, ...] = ("plugin", "plugin-uncached")
_CHECKS = re.compile(r'^rpc_server_duration_milliseconds_count\{[^}]*'
                     r'rpc_method="CheckResources"[^}]*\} (\d+)', re.MULTILINE)


@dataclass(frozen=True)
class Params:
    rounds: int  # batches per server; the order rotates every round (a multiple of 5)
    batch: int
    warmup: int
    counted: int = 20  # requests per protected server while counting PDP round trips


@dataclass(frozen=True)
class Operation:
    tools: ToolSet
    method: str
    params: dict[str, Any] | None


CALL = Operation("crm", "tools/call", {"name": "search_contacts", "arguments": {"query": "a"}})
LIST = Operation("many", "tools/list", None)


@dataclass
class Samples:
    latency: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    pdp_calls: float = 0.0  # per request, counted on Cerbos's side


def cerbos_check_calls(http_url: str) -> int:
    """CheckResources RPCs Cerbos has answered since it started."""
    text = httpx.get(f"{http_url}/_cerbos/metrics", trust_env=False, timeout=5).text
    return sum(int(n) for n in _CHECKS.findall(text))


async def _validate(op: Operation, sessions: dict[Variant, McpSession]) -> None:
    """Every server answers the same thing before anything is timed."""
    for variant, session in sessions.items():
        result = await session.check(op.method, op.params)
        if op.method == "tools/list" and len(result["tools"]) != MANY_TOOLS:
            raise RuntimeError(f"{variant} listed {len(result['tools'])} tools, "
                               f"not {MANY_TOOLS}")
        if op.method == "tools/call" and "Ada Lovelace" not in str(result):
            raise RuntimeError(f"{variant} answered {str(result)[:200]}")


async def _batch(session: McpSession, op: Operation, count: int, pid: int,
                 into: Samples | None) -> None:
    before = cpu_seconds(pid)
    for _ in range(count):
        start = time.perf_counter()
        await session.request(op.method, op.params)
        if into is not None:
            into.latency.append(time.perf_counter() - start)
    if into is not None:
        into.cpu_s += cpu_seconds(pid) - before


async def _count_pdp_calls(stack: Stack, session: McpSession, op: Operation, count: int
                           ) -> float:
    before = await asyncio.to_thread(cerbos_check_calls, stack.cerbos.http_url)
    for _ in range(count):
        await session.request(op.method, op.params)
    after = await asyncio.to_thread(cerbos_check_calls, stack.cerbos.http_url)
    return (after - before) / count


async def _measure(stack: Stack, servers: list[BenchMcpServer], op: Operation,
                   params: Params, token: str) -> dict[Variant, Samples]:
    samples = {s.variant: Samples() for s in servers}
    async with AsyncExitStack() as exits:
        sessions: dict[Variant, McpSession] = {}
        for server in servers:
            session = McpSession("127.0.0.1", server.port, server.path(op.tools), token=token)
            exits.push_async_callback(session.aclose)
            await session.open()
            sessions[server.variant] = session
        await _validate(op, sessions)
        pids = {s.variant: _pid(s) for s in servers}
        for variant, session in sessions.items():
            await _batch(session, op, params.warmup, pids[variant], None)
        order = list(sessions)
        for round_ in range(params.rounds):
            for k in range(len(order)):
                variant = order[(round_ + k) % len(order)]
                await _batch(sessions[variant], op, params.batch, pids[variant],
                             samples[variant])
        for variant in (*PLUGINS, "cerbos-fastmcp"):
            samples[variant].pdp_calls = await _count_pdp_calls(
                stack, sessions[variant], op, params.counted)
    return samples


def _pid(server: BenchMcpServer) -> int:
    if server.pid is None:
        raise RuntimeError(f"{server.name} is not running")
    return server.pid


def _compare(stack: Stack, op: Operation, params: Params) -> dict[Variant, Samples]:
    async def token() -> str:
        async with broker_client(stack.broker.url) as broker:
            return (await mint(broker, user_id_token(stack.oidc.issuer))).token

    minted = asyncio.run(token())
    return asyncio.run(_measure(stack, _servers(stack), op, params, minted))


def _servers(stack: Stack) -> list[BenchMcpServer]:
    def make() -> list[BenchMcpServer]:
        return [BenchMcpServer(stack.work_dir / "mcp", v, broker=stack.broker.url,
                               cerbos=stack.cerbos.grpc_address, redis_url=stack.redis_url,
                               prefix=BROKER_PREFIX) for v in VARIANTS]

    servers = stack.shared_processes("mcp variants", make)
    return [s for s in servers if isinstance(s, BenchMcpServer)]


def _common(samples: dict[Variant, Samples], what: str) -> list[Figure]:
    figures = []
    for variant, s in samples.items():
        figures += [Figure(f"p50 {NAMES[variant]}", ms(percentile(s.latency, 50)), "ms",
                           note=f"{len(s.latency)} {what}"),
                    Figure(f"p99 {NAMES[variant]}", ms(percentile(s.latency, 99)), "ms")]
    for variant, s in samples.items():
        figures.append(Figure(f"server CPU per request, {NAMES[variant]}",
                              ms(s.cpu_s / len(s.latency)), "ms",
                              note="the server process, every thread (/proc)"))
    return figures


def _p50(s: Samples) -> float:
    return percentile(s.latency, 50)


CALL_FULL = Params(rounds=30, batch=20, warmup=100)
LIST_FULL = Params(rounds=15, batch=20, warmup=30)
SMOKE = Params(rounds=5, batch=1, warmup=1, counted=1)


def run_call(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else CALL_FULL
    samples = _compare(stack, CALL, params)
    plain, authenticated, plugin, uncached, peer = (_p50(samples[v]) for v in VARIANTS)
    figures = _common(samples, "calls")
    figures += [
        Figure("p50 ratio mcp_plugin/unprotected", round(plugin / plain, 3), "x", Goal(1.25),
               note="the same call repeated: answered by the 1 s decision cache"),
        Figure("p50 ratio mcp_plugin/cerbos-fastmcp", round(plugin / peer, 3), "x",
               Goal(1.0, op="<")),
        Figure("p50 ratio authenticated only/unprotected", round(authenticated / plain, 3),
               "x", note="what FastMCP itself adds once requests carry a verified token"),
        Figure("p50 ratio mcp_plugin/authenticated only", round(plugin / authenticated, 3),
               "x", note="what mcp_plugin adds over FastMCP's own authentication"),
        Figure("p50 ratio mcp_plugin uncached/unprotected", round(uncached / plain, 3), "x",
               note="every call asks Cerbos: a question not asked in the last second"),
        Figure("p50 ratio mcp_plugin uncached/cerbos-fastmcp", round(uncached / peer, 3), "x",
               Goal(1.0, op="<")),
        Figure("PDP round trips per call, mcp_plugin", samples["plugin"].pdp_calls, TRIPS,
               note="repeated calls within the decision cache's second"),
        Figure("PDP round trips per call, mcp_plugin uncached",
               samples["plugin-uncached"].pdp_calls, TRIPS, Goal(1.0),
               note="the call's own question; a listing is never asked inside a call"),
        Figure("PDP round trips per call, cerbos-fastmcp",
               samples["cerbos-fastmcp"].pdp_calls, TRIPS),
    ]
    return {**asdict(params), **asdict(CALL)}, figures


def run_list(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else LIST_FULL
    samples = _compare(stack, LIST, params)
    plain, _, plugin, uncached, peer = (_p50(samples[v]) for v in VARIANTS)
    # a floor of 10 µs: two p50s a hair apart would make the ratio meaningless, not better
    added_uncached, added_peer = max(uncached - plain, 1e-5), peer - plain
    figures = _common(samples, "lists")
    figures += [
        Figure("added latency, mcp_plugin", ms(plugin - plain), "ms",
               note="p50 minus the unprotected p50; repeated lists hit the decision cache"),
        Figure("added latency, mcp_plugin uncached", ms(uncached - plain), "ms",
               note="p50 minus the unprotected p50"),
        Figure("added latency, cerbos-fastmcp", ms(added_peer), "ms",
               note="p50 minus the unprotected p50"),
        Figure("added latency ratio cerbos-fastmcp/mcp_plugin uncached",
               round(max(added_peer, 0.0) / added_uncached, 2), "x", Goal(10, op=">=")),
        Figure("PDP round trips per list, mcp_plugin uncached",
               samples["plugin-uncached"].pdp_calls, TRIPS, Goal(1.0),
               note=f"{MANY_TOOLS} tools, one batched CheckResources"),
        Figure("PDP round trips per list, cerbos-fastmcp", samples["cerbos-fastmcp"].pdp_calls,
               TRIPS, note="one per tool, plus the command-level tools/list check"),
    ]
    if samples["plugin-uncached"].pdp_calls < 1:
        raise RuntimeError("mcp_plugin listed tools without asking Cerbos")
    return {**asdict(params), **asdict(LIST), "tools": MANY_TOOLS}, figures


def _names(extra: tuple[str, ...]) -> tuple[str, ...]:
    names = [f"p{q} {NAMES[v]}" for v in VARIANTS for q in (50, 99)]
    names += [f"server CPU per request, {NAMES[v]}" for v in VARIANTS]
    return (*names, *extra)


CALL_MEASURE = Measure(
    name="tool_call",
    title="MCP tools/call vs peers",
    figures=_names(("p50 ratio mcp_plugin/unprotected", "p50 ratio mcp_plugin/cerbos-fastmcp",
                    "p50 ratio authenticated only/unprotected",
                    "p50 ratio mcp_plugin/authenticated only",
                    "p50 ratio mcp_plugin uncached/unprotected",
                    "p50 ratio mcp_plugin uncached/cerbos-fastmcp",
                    "PDP round trips per call, mcp_plugin",
                    "PDP round trips per call, mcp_plugin uncached",
                    "PDP round trips per call, cerbos-fastmcp")),
    run=run_call,
)
LIST_MEASURE = Measure(
    name="tools_list",
    title="MCP tools/list, 50 tools",
    figures=_names(("added latency, mcp_plugin", "added latency, mcp_plugin uncached",
                    "added latency, cerbos-fastmcp",
                    "added latency ratio cerbos-fastmcp/mcp_plugin uncached",
                    "PDP round trips per list, mcp_plugin uncached",
                    "PDP round trips per list, cerbos-fastmcp")),
    run=run_list,
)
