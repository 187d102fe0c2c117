"""Token exchange, full path, on one broker worker (issue 6 §1): throughput, p50 and p99 at
concurrency 1 and 32, against a no-op endpoint of the same app, process and server options.

The full path: client_secret_basic authentication, the dev IdP's RS256 ID token verified
against its JWKS, one batched Cerbos decision, the Lua script that checks revocations and
writes the session, its indexes and the audit record, EdDSA signing. The broker is
`python -m bench.broker_app` (bench/broker_app.py: `agent-broker serve` plus a no-op route),
one uvicorn process with one worker, on its own key prefix, dropped afterwards (the profile
measure uses the same process).

Load comes from `python -m bench.load` in a separate process: `concurrency` keep-alive
connections, closed loop, prebuilt requests (one per user, round robin), a warm-up before
each timed window. No-op and exchange windows alternate (ABBA), so drift in the machine's
load falls on both. Besides wall-clock throughput, the broker's own CPU time over each run
gives exchanges per CPU-second: "per worker core", which holds on a 2-core machine where the
load generator, Redis and Cerbos share the cores with the broker.

A second broker, the same but asking Cerbos over its REST API (`cerbos.address` an http URL,
broker/pdp/cerbos_http.py) instead of gRPC, serves the same exchanges in windows interleaved
with the others (no-op, gRPC, REST, then REST, gRPC, no-op), so the two transports are
compared under the same drift.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from urllib.parse import urlencode

import httpx

from bench.broker_app import NOOP_PATH
from bench.load import LoadResult, LoadSpec, build_request, run_in_process
from bench.measure import Measure
from bench.proc import cpu_seconds
from bench.results import Figure, Goal
from bench.sessions import forget_prefix
from bench.stack import BrokerProcess, Stack
from bench.stats import ms, percentile
from bench.tokens import broker_client, mint, user_id_token
from tests.integration.conftest import basic, exchange_form

PREFIX = "bench-ex:"
REST_PREFIX = "bench-ex-rest:"
NOOP, EXCHANGE, REST = "no-op", "exchange", "exchange, REST Cerbos"
KEYCLOAK = "Keycloak's published sizing: 120-450 grants/s per vCPU"


@dataclass(frozen=True)
class Params:
    users: int = 16  # distinct subjects, each with its own pre-minted ID token
    concurrencies: tuple[int, ...] = (1, 32)
    pairs: int = 2  # (no-op, exchange) window pairs per concurrency, in ABBA order
    window_s: float = 4.0
    warmup_s: float = 1.0


FULL = Params()
SMOKE = Params(users=2, pairs=1, window_s=0.3, warmup_s=0.1)


@dataclass
class Run:
    """Pooled over the windows of one (endpoint, concurrency)."""

    completed: int = 0
    requests: int = 0
    window_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def add(self, result: LoadResult, server_cpu_s: float) -> None:
        if result.unexpected:
            raise RuntimeError(f"{result.unexpected} unexpected responses, first: "
                               f"{result.first_error}")
        self.completed += result.completed
        self.requests += result.requests
        self.window_s += result.window_s
        self.latencies += result.latencies
        self.server_cpu_s += server_cpu_s
        self.client_cpu_s += result.client_cpu_s

    @property
    def throughput(self) -> float:
        return self.completed / self.window_s

    @property
    def per_cpu_second(self) -> float:
        """Requests per second of the broker's CPU: its capacity on one core."""
        return self.requests / self.server_cpu_s


def exchange_requests(broker: BrokerProcess, id_tokens: list[str]) -> list[str]:
    headers = [("Content-Type", "application/x-www-form-urlencoded"),
               *basic("research-agent").items()]
    return [build_request("POST", "127.0.0.1", broker.port, "/oauth2/token", headers=headers,
                          body=urlencode(exchange_form(t, scope="crm:read")).encode()
                          ).decode("latin-1")
            for t in id_tokens]


def noop_requests(broker: BrokerProcess, exchanges: list[str]) -> list[str]:
    """The same bytes (headers, form body) to the no-op route: only the work differs."""
    return [r.replace("POST /oauth2/token ", f"POST {NOOP_PATH} ", 1) for r in exchanges]


def _window(broker: BrokerProcess, requests: list[str], concurrency: int,
            params: Params, into: Run) -> None:
    pid = broker.pid
    assert pid is not None
    before = cpu_seconds(pid)
    result = run_in_process(LoadSpec("127.0.0.1", broker.port, requests, concurrency,
                                     params.window_s, params.warmup_s))
    into.add(result, cpu_seconds(pid) - before)


def _check(broker: BrokerProcess, id_token: str) -> None:
    """One exchange through httpx first: the broker grants, and the no-op route answers."""
    async def check() -> None:
        async with broker_client(broker.url) as client:
            await mint(client, id_token)
    asyncio.run(check())
    response = httpx.post(f"{broker.url}{NOOP_PATH}", trust_env=False, timeout=5)
    response.raise_for_status()


def _measure(broker: BrokerProcess, rest: BrokerProcess, params: Params, id_tokens: list[str]
             ) -> dict[tuple[str, int], Run]:
    exchanges = exchange_requests(broker, id_tokens)
    served = {NOOP: (broker, noop_requests(broker, exchanges)), EXCHANGE: (broker, exchanges),
              REST: (rest, exchange_requests(rest, id_tokens))}
    runs = {(kind, c): Run() for kind in served for c in params.concurrencies}
    for concurrency in params.concurrencies:
        for pair in range(params.pairs):
            order = (NOOP, EXCHANGE, REST) if pair % 2 == 0 else (REST, EXCHANGE, NOOP)
            for kind in order:
                server, requests = served[kind]
                _window(server, requests, concurrency, params, runs[(kind, concurrency)])
    return runs


def _figures(runs: dict[tuple[str, int], Run], params: Params) -> list[Figure]:
    figures = []
    for c in params.concurrencies:
        for kind in (EXCHANGE, NOOP, REST):
            run = runs[(kind, c)]
            figures += [
                Figure(f"{kind} c={c}: throughput", round(run.throughput), "/s"),
                Figure(f"{kind} c={c}: p50", ms(percentile(run.latencies, 50)), "ms"),
                Figure(f"{kind} c={c}: p99", ms(percentile(run.latencies, 99)), "ms"),
            ]
    top = max(params.concurrencies)
    ex, noop = runs[(EXCHANGE, top)], runs[(NOOP, top)]
    busy = ex.server_cpu_s / (ex.window_s + params.pairs * params.warmup_s)
    low = min(params.concurrencies)
    low_ratio = runs[(EXCHANGE, low)].throughput / runs[(NOOP, low)].throughput
    figures += [
        Figure(f"throughput ratio exchange/no-op, c={top}", round(ex.throughput /
                                                                  noop.throughput, 3),
               "x", Goal(0.30, op=">="), note="capacity: both saturate the worker"),
        Figure(f"throughput ratio exchange/no-op, c={low}", round(low_ratio, 3), "x",
               note="latency-bound: the exchange waits on Redis, Cerbos"),
        Figure("exchanges per worker CPU-second", round(ex.per_cpu_second), "/s",
               Goal(2000, op=">="), note=f"the broker process's CPU time; {KEYCLOAK}"),
        Figure("no-op requests per worker CPU-second", round(noop.per_cpu_second), "/s"),
        Figure("exchanges per worker CPU-second, REST Cerbos",
               round(runs[(REST, top)].per_cpu_second), "/s",
               note="the same broker asking Cerbos over its REST API, interleaved windows"),
        Figure("exchanges per CPU-second, REST/gRPC Cerbos",
               round(runs[(REST, top)].per_cpu_second / ex.per_cpu_second, 3), "x",
               note=f"c={top}, same windows' drift on both"),
        Figure(f"broker CPU busy, exchange c={top}", round(100 * busy, 1), "%",
               note="of one core: near 100 means the one worker was the limit"),
        Figure("load generator CPU per request", round(1e6 * ex.client_cpu_s / ex.requests),
               "µs", note="a separate process; small beside the broker's cost per exchange"),
    ]
    return figures


def bench_broker(stack: Stack, *, cerbos_rest: bool = False) -> BrokerProcess:
    """The broker with the bench routes, started once per run (asking Cerbos over gRPC, or
    with `cerbos_rest` over its REST API)."""
    name, prefix = ("bench broker, REST Cerbos", REST_PREFIX) if cerbos_rest else (
        "bench broker", PREFIX)
    processes = stack.shared_processes(
        name, lambda: [stack.bench_broker(prefix, cerbos_rest=cerbos_rest)])
    broker = processes[0]
    assert isinstance(broker, BrokerProcess)
    return broker


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    id_tokens = [user_id_token(stack.oidc.issuer) for _ in range(params.users)]
    broker, rest = bench_broker(stack), bench_broker(stack, cerbos_rest=True)
    try:
        _check(broker, id_tokens[0])
        _check(rest, id_tokens[0])
        runs = _measure(broker, rest, params, id_tokens)
    finally:
        forget_prefix(stack.redis_url, PREFIX)
        forget_prefix(stack.redis_url, REST_PREFIX)
    exchanges = sum(r.requests for (kind, _), r in runs.items() if kind != NOOP)
    return {**asdict(params), "exchanges": exchanges}, _figures(runs, params)


def figure_names(params: Params = FULL) -> tuple[str, ...]:
    names = [f"{kind} c={c}: {what}" for c in params.concurrencies
             for kind in (EXCHANGE, NOOP, REST) for what in ("throughput", "p50", "p99")]
    top, low = max(params.concurrencies), min(params.concurrencies)
    return (*names, f"throughput ratio exchange/no-op, c={top}",
            f"throughput ratio exchange/no-op, c={low}", "exchanges per worker CPU-second",
            "no-op requests per worker CPU-second",
            "exchanges per worker CPU-second, REST Cerbos",
            "exchanges per CPU-second, REST/gRPC Cerbos", f"broker CPU busy, exchange c={top}",
            "load generator CPU per request")


MEASURE = Measure(
    name="exchange",
    title="Token exchange, one worker",
    figures=figure_names(),
    run=run,
)
