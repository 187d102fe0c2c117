"""Exchange cost against the number of live sessions (issue 6 §5: exchange p50 with 10 and
with 1,000,000 live sessions in Redis; ratio ≤ 1.1).

Three brokers with the bench routes, each on its own Redis (so a million sessions weigh on
the whole instance, its keyspace and memory, not only on one key prefix): one holding 10
live sessions, one 1,000,000, and a control twin of the small one whose ratio to it (an A/A
comparison) is the noise floor. Sessions are written in the broker's key layout
(bench/sessions.py): records, jti keys, the all/user/agent indexes every exchange adds to
and trims, and audit streams at their caps. The bench's own subjects are among the owners,
so their user indexes are as full as anyone's.

Exchanges are sequential (concurrency 1: latency, not capacity), one keep-alive connection
per broker, the brokers taking turns in batches in a rotating order.

Then the case a steady load never shows: sessions that expired while nobody exchanged (a
quiet night) stay in the indexes until the next exchange trims them. `backlog` such entries
are added to the large instance's indexes before each of a few single exchanges, timed.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field

import jwt
import redis

from bench.exchange import exchange_requests
from bench.load import Connection
from bench.measure import Measure
from bench.results import Figure, Goal
from bench.sessions import add_backlog, load_sessions
from bench.stack import BrokerProcess, Stack, running
from bench.stats import ms, percentile
from bench.tokens import user_id_token
from tests.support.services import RedisService, free_port

PREFIX = "bench-scale:"


@dataclass(frozen=True)
class Params:
    small: int = 10
    large: int = 1_000_000
    users: int = 8
    rounds: int = 30  # batches per broker; the order rotates every round (a multiple of 3)
    batch: int = 20
    warmup: int = 50
    backlog: int = 100_000
    backlog_trials: int = 5
    audit_cap: int | None = None  # None: the streams at their configured caps


FULL = Params()
SMOKE = Params(large=2_000, rounds=3, batch=3, warmup=3, backlog=1_000, backlog_trials=1,
               audit_cap=500)


@dataclass
class Outcome:
    latency: tuple[list[float], list[float], list[float]] = field(
        default_factory=lambda: ([], [], []))  # small, large, control
    backlog: list[float] = field(default_factory=list)
    large_memory: int = 0
    load_s: float = 0.0


class Broker:
    """One broker under test: its process, connection and prebuilt exchange requests."""

    def __init__(self, process: BrokerProcess, id_tokens: list[str]) -> None:
        self.process = process
        self.requests = [r.encode("latin-1") for r in exchange_requests(process, id_tokens)]
        self.connection = Connection("127.0.0.1", process.port)
        self._next = 0

    async def exchange(self) -> float:
        request = self.requests[self._next % len(self.requests)]
        self._next += 1
        start = time.perf_counter()
        status, _, body = await self.connection.send(request)
        elapsed = time.perf_counter() - start
        if status != 200:
            raise RuntimeError(f"exchange failed: {status} {body[:200]!r}")
        return elapsed


async def _measure(brokers: list[Broker], params: Params, large_redis: str,
                   outcome: Outcome) -> None:
    async with AsyncExitStack() as exits:
        for broker in brokers:
            exits.push_async_callback(broker.connection.aclose)
            for _ in range(params.warmup):
                await broker.exchange()
        n = len(brokers)
        for round_ in range(params.rounds):
            for k in range(n):
                i = (round_ + k) % n
                for _ in range(params.batch):
                    outcome.latency[i].append(await brokers[i].exchange())
        for _ in range(params.backlog_trials):
            await asyncio.to_thread(add_backlog, large_redis, PREFIX, params.backlog)
            outcome.backlog.append(await brokers[1].exchange())


def _used_memory(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def run(stack: Stack, smoke: bool) -> tuple[dict[str, object], list[Figure]]:
    params = SMOKE if smoke else FULL
    id_tokens = [user_id_token(stack.oidc.issuer) for _ in range(params.users)]
    subjects = [jwt.decode(t, options={"verify_signature": False})["sub"] for t in id_tokens]
    redises = [RedisService(stack.work_dir / "redis-scale", free_port(), appendonly=False)
               for _ in range(3)]
    outcome = Outcome()
    with running(redises):
        start = time.monotonic()
        for service, count in zip(redises, (params.small, params.large, params.small),
                                  strict=True):
            load_sessions(service.url, PREFIX, count, issuer=stack.broker.url,
                          subjects=subjects, audit_cap=params.audit_cap)
        outcome.load_s = time.monotonic() - start
        outcome.large_memory = _used_memory(redises[1].url)
        processes = [stack.bench_broker(PREFIX, redis_url=r.url) for r in redises]
        with running(processes):
            brokers = [Broker(p, id_tokens) for p in processes]
            asyncio.run(_measure(brokers, params, redises[1].url, outcome))
    return {**asdict(params), "exchanges_per_broker": len(outcome.latency[0])}, _figures(
        outcome, params)


def _figures(outcome: Outcome, params: Params) -> list[Figure]:
    small, large, _ = outcome.latency
    p50_small, p50_large, p50_control = (percentile(s, 50) for s in outcome.latency)
    backlog = statistics.median(outcome.backlog)
    return [
        Figure("p50, few sessions", ms(p50_small), "ms",
               note=f"{params.small:,} live, {len(small)} exchanges"),
        Figure("p50, many sessions", ms(p50_large), "ms",
               note=f"{params.large:,} live, {len(large)} exchanges"),
        Figure("p50 ratio many/few", round(p50_large / p50_small, 3), "x", Goal(1.1)),
        Figure("p50 ratio control/few", round(p50_control / p50_small, 3), "x",
               note="A/A: two identical brokers and Redis; the ratio's noise floor"),
        Figure("p99, few sessions", ms(percentile(small, 99)), "ms"),
        Figure("p99, many sessions", ms(percentile(large, 99)), "ms"),
        Figure("exchange after an expired backlog", ms(backlog), "ms",
               note=f"{params.backlog:,} sessions expired unseen in the indexes, median of "
                    f"{len(outcome.backlog)}"),
        Figure("Redis memory, many sessions", round(outcome.large_memory / 1e6), "MB"),
        Figure("loading Redis", round(outcome.load_s, 1), "s", note="bench setup"),
    ]


MEASURE = Measure(
    name="session_scale",
    title="Exchange vs live sessions",
    figures=("p50, few sessions", "p50, many sessions", "p50 ratio many/few",
             "p50 ratio control/few", "p99, few sessions", "p99, many sessions",
             "exchange after an expired backlog", "Redis memory, many sessions",
             "loading Redis"),
    run=run,
)
