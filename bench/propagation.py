"""Revocation propagation: from the admin's revoke call returning to the first 401 on each of
three MCP server processes (issue 4: p99 <= 50 ms, goal 10 ms, over >= 100 trials).

A trial mints a fresh session, checks that every server accepts its token, revokes the session
with `POST /admin/revocations` (an admin's bearer token from the OIDC provider), and then
polls every server concurrently in a tight loop (one keep-alive connection each, see
bench/probe.py) until it answers 401. A sample is the time from the admin response arriving
to the 401 response arriving: an upper bound, one poll round trip coarse, since the revocation
may have landed at any moment during the last poll. The probe round trip is reported beside
it as that resolution.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass

from bench.mcp import probe_client, wait_status
from bench.measure import Measure
from bench.probe import Prober
from bench.results import Figure, Goal
from bench.stack import Stack, running
from bench.stats import ms, percentile
from bench.tokens import admin_id_token, broker_client, mint, user_id_token
from tests.integration.mcp_processes import McpServerProcess


@dataclass(frozen=True)
class Params:
    trials: int
    servers: int = 3
    timeout_s: float = 5.0  # a server still accepting after this is a failure, not a sample
    rtt_probes: int = 100  # per server, to report the poll's round trip


FULL = Params(trials=500)
SMOKE = Params(trials=5, rtt_probes=10)


@dataclass
class Samples:
    latency: list[float]  # seconds, one per server and trial
    first_poll: int  # samples refused at the very first poll: already there when we asked
    admin_call: list[float]  # the revoke call itself, request to response
    probe_rtt: list[float]


async def _until_refused(probe: Prober, server: McpServerProcess, token: str,
                         since: float, within: float) -> tuple[float, int]:
    polls = 0
    while True:
        polls += 1
        code = await probe.status(token)
        now = time.perf_counter()
        if code == 401:
            return now - since, polls
        if code != 200:
            raise RuntimeError(f"{server.name} answered {code} while waiting for 401")
        if now - since > within:
            raise TimeoutError(f"{server.name} still accepts a revoked session after "
                               f"{within} s (log {server.log_path})")


async def _probe_rtt(probe: Prober, token: str, count: int) -> list[float]:
    rtts = []
    for _ in range(count):
        start = time.perf_counter()
        await probe.status(token)
        rtts.append(time.perf_counter() - start)
    return rtts


async def _measure(stack: Stack, servers: list[McpServerProcess], params: Params, *,
                   id_token: str, admin: str) -> Samples:
    samples = Samples([], 0, [], [])
    async with AsyncExitStack() as exits:
        broker = await exits.enter_async_context(broker_client(stack.broker.url))
        probes = [Prober("127.0.0.1", s.port) for s in servers]
        for probe in probes:
            exits.push_async_callback(probe.aclose)
        pairs = list(zip(probes, servers, strict=True))
        async with probe_client() as http:  # the first request per server fetches the JWKS
            warm = await mint(broker, id_token)
            await asyncio.gather(*(wait_status(http, s, warm.token, 200, 30) for s in servers))
        revoked = warm
        for _ in range(params.trials):
            minted = await mint(broker, id_token)
            codes = await asyncio.gather(*(h.status(minted.token) for h in probes))
            if any(code != 200 for code in codes):
                raise RuntimeError(f"a fresh token was refused before its revocation: {codes}")
            sent = time.perf_counter()
            response = await broker.post("/admin/revocations",
                                         json={"session": minted.sid, "reason": "bench"},
                                         headers={"Authorization": f"Bearer {admin}"})
            returned = time.perf_counter()
            if response.status_code != 201:
                raise RuntimeError(f"revoke failed: {response.status_code} {response.text}")
            found = await asyncio.gather(*(_until_refused(h, s, minted.token, returned,
                                                          params.timeout_s) for h, s in pairs))
            samples.admin_call.append(returned - sent)
            samples.latency += [latency for latency, _ in found]
            samples.first_poll += sum(1 for _, polls in found if polls == 1)
            revoked = minted
        # the resolution: a 401 poll's round trip, all servers polled at once as in trials
        rtts = await asyncio.gather(*(_probe_rtt(h, revoked.token, params.rtt_probes)
                                      for h in probes))
        samples.probe_rtt = [r for per_server in rtts for r in per_server]
    return samples


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    servers = [stack.mcp_server() for _ in range(params.servers)]
    id_token, admin = user_id_token(stack.oidc.issuer), admin_id_token(stack.oidc.issuer)
    with running(servers):
        samples = asyncio.run(_measure(stack, servers, params, id_token=id_token, admin=admin))
    latency = samples.latency
    goal = Goal(50.0, stretch=10.0)
    figures = [
        Figure("p50", ms(percentile(latency, 50)), "ms"),
        Figure("p99", ms(percentile(latency, 99)), "ms", goal,
               note=f"over {len(latency)} samples ({params.servers} servers x "
                    f"{params.trials} trials)"),
        Figure("max", ms(max(latency)), "ms"),
        Figure("refused at first poll", round(100 * samples.first_poll / len(latency), 1),
               "%", note="already revoked when the admin response arrived"),
        Figure("probe round trip p50", ms(percentile(samples.probe_rtt, 50)), "ms",
               note="the resolution of each sample"),
        Figure("admin revoke call p50", ms(percentile(samples.admin_call, 50)), "ms",
               note="not part of the samples: they start when it returns"),
    ]
    return {**asdict(params), "samples": len(latency)}, figures


MEASURE = Measure(
    name="propagation",
    title="Revocation propagation",
    figures=("p50", "p99", "max", "refused at first poll", "probe round trip p50",
             "admin revoke call p50"),
    run=run,
)
