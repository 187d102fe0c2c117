"""Mixed load on a fleet (issue 7): 60 s of token exchanges and tool calls against two broker
processes and three MCP server processes sharing one Redis, with zero errors and flat memory.

The fleet (tests/integration/mcp_processes.py `Fleet`, as the fault tests run it): two
`agent-broker serve` processes with the same issuer, signing keys file, Redis and key prefix,
and three demo CRM servers, each with mcp_plugin and its own revocation feed. The traffic
(bench/traffic.py): one loop per simulated agent, each exchanging its own sales rep's ID token
at the next broker, then making four MCP requests with the token, at the next server each
(`search_contacts` calls; every fifth a `tools/list`). Each request is checked: an exchange
must return a token, a call a result, a list at least one tool.

The traffic runs until every process has served (cold start: lazy imports, the JWKS fetch,
the Cerbos channel), and on until the MCP servers' bounded caches are full (the verifier's
tokens in use: `warm_tokens`), then the window starts: memory that grows after that is not a
cache filling. RSS (VmRSS) of every broker and MCP server is
sampled through the window; the growth of each is the mean of the last quarter's samples
minus the mean of the first quarter's: a leak grows steadily and shows, a sample taken mid-
request does not.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

from bench.mcp import rss_bytes
from bench.measure import Measure
from bench.results import Figure, Goal
from bench.stack import Stack, running
from bench.tokens import user_id_token
from bench.traffic import CALL, EXCHANGE, LIST, OK, Traffic
from mcp_plugin.verifier import DEFAULT_CACHE_SIZE
from tests.integration.conftest import CRM, SECRETS
from tests.integration.mcp_processes import Fleet

PREFIX = "bench-load:"
MB = 1_000_000
RSS_GROWTH_GOAL_MB = 5.0


@dataclass(frozen=True)
class Params:
    duration_s: float = 60.0
    agents: int = 8
    sample_every_s: float = 0.5
    cold_start_within_s: float = 60.0
    warm_tokens: int = DEFAULT_CACHE_SIZE * 11 // 10
    """Tokens minted before the window: every server sees every token (four requests a token,
    round robin over three), so its verifier's cache of tokens in use is full and stays so."""
    warm_within_s: float = 240.0


FULL = Params()
SMOKE = Params(duration_s=4.0, agents=4, sample_every_s=0.2, warm_tokens=0)


async def _sample(pids: list[int], every: float, stop: asyncio.Event,
                  samples: list[list[int]]) -> None:
    while not stop.is_set():
        samples.append([rss_bytes(pid) for pid in pids])
        await asyncio.sleep(every)


def _growth(samples: list[list[int]], column: int) -> float:
    quarter = max(1, len(samples) // 4)
    first = [row[column] for row in samples[:quarter]]
    last = [row[column] for row in samples[-quarter:]]
    return (sum(last) / len(last) - sum(first) / len(first)) / MB


async def _minted(traffic: Traffic, tokens: int, within: float) -> None:
    """Wait until `tokens` exchanges have succeeded (TimeoutError past `within`)."""
    deadline = time.monotonic() + within
    while traffic.tally()[(EXCHANGE, OK)] < tokens:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tokens} tokens not minted within {within} s")
        await asyncio.sleep(0.5)


async def _measure(fleet: Fleet, traffic: Traffic, params: Params
                   ) -> tuple[float, float, list[list[int]]]:
    pids = [p.pid for p in fleet.processes if p.pid is not None]
    samples: list[list[int]] = []
    stop = asyncio.Event()
    async with traffic.running():
        await traffic.serving(0.0, params.cold_start_within_s)
        await _minted(traffic, params.warm_tokens, params.warm_within_s)
        start = time.monotonic()
        sampler = asyncio.create_task(_sample(pids, params.sample_every_s, stop, samples))
        await asyncio.sleep(params.duration_s)
        end = time.monotonic()
        stop.set()
        await sampler
    return start, end, samples


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    fleet = Fleet.build(stack.work_dir / "load", redis_url=stack.redis_url,
                        cerbos_address=stack.cerbos.grpc_address, oidc_issuer=stack.oidc.issuer,
                        prefix=PREFIX)
    id_tokens = [user_id_token(stack.oidc.issuer) for _ in range(params.agents)]
    traffic = Traffic([b.url for b in fleet.brokers], [s.url for s in fleet.servers], id_tokens,
                      client_id="research-agent", client_secret=SECRETS["research-agent"],
                      resource=CRM)
    with running(fleet.processes):
        start, end, samples = asyncio.run(_measure(fleet, traffic, params))
    window = [e for e in traffic.events if start <= e.started < end]
    exchanges = sum(1 for e in window if e.kind == EXCHANGE)
    calls = sum(1 for e in window if e.kind in (CALL, LIST))
    errors = [e for e in traffic.events if e.started >= start and e.outcome != OK]
    seconds = end - start
    goal = Goal(RSS_GROWTH_GOAL_MB)
    names = [f"broker {n + 1}" for n in range(len(fleet.brokers))]
    names += [f"MCP server {n + 1}" for n in range(len(fleet.servers))]
    note = f"{len(samples)} samples; mean of the last quarter minus the first"
    figures = [
        Figure("errors", len(errors), "requests", Goal(0),
               note=f"first: {errors[0].kind} {errors[0].outcome}" if errors else ""),
        Figure("exchanges", exchanges, "requests",
               note=f"{exchanges / seconds:.0f}/s over both brokers"),
        Figure("tool calls and lists", calls, "requests",
               note=f"{calls / seconds:.0f}/s over three MCP servers"),
        Figure("throughput", round((exchanges + calls) / seconds, 1), "req/s",
               note=f"{params.agents} agents, {seconds:.0f} s"),
        *(Figure(f"RSS growth, {name}", round(_growth(samples, n), 2), "MB", goal, note=note)
          for n, name in enumerate(names)),
    ]
    return asdict(params), figures


MEASURE = Measure(
    name="load",
    title="Mixed load, two brokers and three MCP servers",
    figures=("errors", "exchanges", "tool calls and lists", "throughput",
             "RSS growth, broker 1", "RSS growth, broker 2", "RSS growth, MCP server 1",
             "RSS growth, MCP server 2", "RSS growth, MCP server 3"),
    run=run,
)
