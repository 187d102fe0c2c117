"""The real stack a bench run measures: Redis, Cerbos, the dev OIDC provider and one broker
process, on free loopback ports; MCP servers, extra brokers (with the bench routes) and extra
Redis instances are started per measure.

Cerbos serves a copy of policies/ plus bench/policies/ (the 50-tool server's resource kind);
the repository's policies are used exactly as shipped.

Process management is tests/support/services.py's (`ManagedProcess`: log file per process,
bounded readiness waits, SIGTERM then SIGKILL, all stopped at interpreter exit), and the
broker's configuration is the one the integration tests use (tests/integration/conftest.py),
so the bench measures what the tests check. Everything is stopped when `running_stack` exits,
on failure too.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.integration.mcp_processes import BrokerProcess as ServeProcess
from tests.integration.mcp_processes import McpServerProcess
from tests.support.services import (
    REPO_ROOT,
    CerbosService,
    ManagedProcess,
    OidcProviderService,
    RedisService,
    free_port,
    start_all,
    stop_all,
)

BENCH_POLICIES = Path(__file__).resolve().parent / "policies"
BROKER_PREFIX = "bench:"
TOKEN_TTL_SECONDS = 3600  # a token minted at the start outlives every measure


class BrokerProcess(ServeProcess):
    """`agent-broker serve` in its own process (as deployed), not in the bench's event loop;
    its tokens outlive every measure.

    With `bench_routes`, `python -m bench.broker_app` instead: the same app and server
    options plus the bench-only no-op and profiling routes (bench/broker_app.py).
    """

    def __init__(self, work_dir: Path, *, redis_url: str, cerbos_address: str,
                 oidc_issuer: str, prefix: str = BROKER_PREFIX, bench_routes: bool = False,
                 **config: Any) -> None:
        config.setdefault("token_ttl_seconds", TOKEN_TTL_SECONDS)
        super().__init__(work_dir, redis_url=redis_url, cerbos_address=cerbos_address,
                         oidc_issuer=oidc_issuer, prefix=prefix,
                         module="bench.broker_app" if bench_routes else None, **config)


@contextlib.contextmanager
def running(processes: Sequence[ManagedProcess]) -> Iterator[None]:
    start_all(processes)
    try:
        yield
    finally:
        stop_all(processes)


@dataclass
class Stack:
    work_dir: Path
    redis: RedisService
    cerbos: CerbosService
    oidc: OidcProviderService
    broker: BrokerProcess
    shared: dict[str, list[ManagedProcess]] = field(default_factory=dict)
    """Processes two measures use alike (`shared_processes`), stopped with the stack."""

    def shared_processes(self, key: str, make: Callable[[], Sequence[ManagedProcess]]
                         ) -> list[ManagedProcess]:
        """Start `make()`'s processes on first use, and hand the same ones out afterwards:
        every process start costs a second or two of both cores."""
        if key not in self.shared:
            processes = list(make())
            start_all(processes)
            self.shared[key] = processes
        return self.shared[key]

    def stop_shared(self) -> None:
        for processes in self.shared.values():
            stop_all(processes)
        self.shared.clear()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def redis_version(self) -> str:
        client = redis.Redis.from_url(self.redis_url)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()

    def bench_broker(self, prefix: str, *, redis_url: str | None = None,
                     cerbos_rest: bool = False) -> BrokerProcess:
        """A broker with the bench routes (not started), on its own key prefix and, if given,
        its own Redis, so what it writes is measured and dropped apart from the rest; it asks
        Cerbos over gRPC, or with `cerbos_rest` over its REST API (`cerbos.address` an URL)."""
        cerbos = self.cerbos.http_url if cerbos_rest else self.cerbos.grpc_address
        return BrokerProcess(self.work_dir / "brokers", redis_url=redis_url or self.redis_url,
                             cerbos_address=cerbos, oidc_issuer=self.oidc.issuer, prefix=prefix,
                             bench_routes=True)

    def mcp_server(self, prefix: str = BROKER_PREFIX) -> McpServerProcess:
        """A demo CRM server (not started) whose revocation feed reads `prefix`."""
        return McpServerProcess(self.work_dir / "mcp", broker=self.broker.url,
                                cerbos=self.cerbos.grpc_address, redis_url=self.redis_url,
                                prefix=prefix)


def bench_policies(work_dir: Path) -> Path:
    """policies/ as shipped, plus bench/policies (the 50-tool server's resource kind): a
    copy, so the repository's policy directory stays exactly what the tests check."""
    target = work_dir / "policies"
    shutil.copytree(REPO_ROOT / "policies", target)
    for policy in sorted(BENCH_POLICIES.glob("*.yaml")):
        shutil.copy(policy, target / policy.name)
    return target


@contextlib.contextmanager
def running_stack(work_dir: Path) -> Iterator[Stack]:
    # Redis without AOF and without snapshots: durability is not what is measured here
    redis = RedisService(work_dir / "redis", free_port(), appendonly=False)
    cerbos = CerbosService(bench_policies(work_dir), work_dir / "cerbos", free_port(),
                           free_port())
    oidc = OidcProviderService(work_dir / "oidc", free_port())
    with running([redis, cerbos, oidc]):
        broker = BrokerProcess(work_dir / "broker", redis_url=redis.url,
                               cerbos_address=cerbos.grpc_address, oidc_issuer=oidc.issuer)
        with running([broker]):
            stack = Stack(work_dir, redis, cerbos, oidc, broker)
            try:
                yield stack
            finally:
                stack.stop_shared()
