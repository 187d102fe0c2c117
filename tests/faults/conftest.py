"""One deployment for every fault test: two broker processes and three MCP server processes
(`Fleet`) on a Redis (AOF, fsync always) and a Cerbos of their own, which the tests kill.

The fleet is started once for the package (about 5 s of both cores); each test leaves it as
it found it, and `whole_fleet` restarts, on the same ports, whatever a failed test left dead.
The MCP servers' revocation staleness bound is 2 s, so failing closed shows within a test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from bench.traffic import Event, Traffic
from broker.stores.redis import RedisKeys
from tests.integration.conftest import CRM, SECRETS, basic, exchange_form
from tests.integration.mcp_processes import Fleet
from tests.integration.revocation_support import ADMIN_AUDIENCE
from tests.support.oidc import oidc_login
from tests.support.services import (
    REPO_ROOT,
    CerbosService,
    ManagedProcess,
    RedisService,
    free_port,
    start_all,
    stop_all,
)

STALENESS_SECONDS = 2.0
AGENTS = 6
RECOVERY_SECONDS = 15.0  # Cerbos' gRPC channel backs off; the feed retries; shared 2 cores


@dataclass
class FaultStack:
    redis: RedisService
    cerbos: CerbosService
    fleet: Fleet
    oidc_issuer: str
    prefix: str
    id_tokens: list[str]

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.redis, self.cerbos, *self.fleet.processes]

    def traffic(self, **options: Any) -> Traffic:
        return Traffic([b.url for b in self.fleet.brokers], [s.url for s in self.fleet.servers],
                       self.id_tokens, client_id="research-agent",
                       client_secret=SECRETS["research-agent"], resource=CRM, **options)

    def admin(self, method: str, path: str, *, broker: int = 0, **kw: Any) -> httpx.Response:
        token = oidc_login(self.oidc_issuer, "root", client_id=ADMIN_AUDIENCE,
                           claims={"roles": ["admin"]}).id_token
        return httpx.request(method, self.fleet.brokers[broker].url + path, timeout=10,
                             trust_env=False, headers={"Authorization": f"Bearer {token}"}, **kw)

    def mint(self, broker: int = 0, user: int = 0) -> tuple[str, str]:
        """(token, sid): one exchange at one broker, outside the traffic."""
        response = httpx.post(self.fleet.brokers[broker].url + "/oauth2/token",
                              data=exchange_form(self.id_tokens[user], scope="crm:read"),
                              headers=basic("research-agent"), timeout=10, trust_env=False)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        return token, jwt.decode(token, options={"verify_signature": False})["sid"]

    def is_active(self, token: str, *, broker: int = 0) -> bool:
        response = httpx.post(self.fleet.brokers[broker].url + "/oauth2/introspect",
                              data={"token": token}, headers=basic("crm-server"), timeout=10,
                              trust_env=False)
        assert response.status_code == 200, response.text
        return bool(response.json()["active"])

    def statuses(self, token: str) -> list[int]:
        """What every MCP server answers an MCP initialize with this token: 200 or 401."""
        with httpx.Client(trust_env=False, timeout=10) as http:
            return [server.status(token, http) for server in self.fleet.servers]

    def revoke_session(self, sid: str, *, broker: int = 0) -> None:
        response = self.admin("POST", "/admin/revocations", broker=broker, json={"session": sid})
        assert response.status_code == 201, response.text

    def refused_everywhere(self, token: str, within: float = 2.0) -> None:
        deadline = time.monotonic() + within
        while (answers := self.statuses(token)) != [401] * len(self.fleet.servers):
            assert time.monotonic() < deadline, f"still accepted: {answers}"
            time.sleep(0.05)

    def session_ids(self) -> set[str]:
        """Every session in Redis: the index of all sessions and the records themselves."""
        keys = RedisKeys(self.prefix)
        client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            indexed = set(client.zrange(keys.all_sessions(), 0, -1))
            stored = {k.removeprefix(keys.session("")) for k in
                      client.scan_iter(keys.session("*"), count=1000)}
        finally:
            client.close()
        return indexed | stored


async def recovered(traffic: Traffic, since: float, within: float = RECOVERY_SECONDS) -> float:
    """When every broker minted and every MCP server served again after `since`."""
    try:
        return await traffic.serving(since, within)
    except TimeoutError as exc:
        pytest.fail(f"no recovery: {exc}")


@dataclass(frozen=True)
class Outage:
    """When, by the monotonic clock, a process was killed and started again under traffic."""

    killing: float  # just before the kill: every request that ended earlier saw a whole fleet
    killed: float
    restarting: float
    back: float  # every broker minted and every MCP server served again

    def during(self, traffic: Traffic) -> list[Event]:
        """The requests started while the process was dead."""
        return [e for e in traffic.events if self.killed <= e.started < self.restarting]


async def outage(traffic: Traffic, process: ManagedProcess, *, lead_in: float,
                 down_for: float) -> Outage:
    """Under running `traffic`: `lead_in` s of it, SIGKILL `process`, `down_for` s without it,
    start it again (same ports, same files), wait until the fleet serves again, and 0.5 s
    more so that what follows recovery is observed too."""
    await asyncio.sleep(lead_in)
    killing = time.monotonic()
    await asyncio.to_thread(process.kill)
    killed = time.monotonic()
    await asyncio.sleep(down_for)
    restarting = time.monotonic()
    await asyncio.to_thread(process.start)
    back = await recovered(traffic, restarting)
    await asyncio.sleep(0.5)
    return Outage(killing, killed, restarting, back)


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory: pytest.TempPathFactory, oidc_issuer: str
                ) -> Iterator[FaultStack]:
    work: Path = tmp_path_factory.mktemp("faults")
    own_redis = RedisService(work / "redis", free_port(), appendonly=True)
    cerbos = CerbosService(REPO_ROOT / "policies", work / "cerbos", free_port(), free_port())
    start_all([own_redis, cerbos])
    prefix = f"f{uuid.uuid4().hex[:8]}:"
    fleet = Fleet.build(work / "fleet", redis_url=own_redis.url,
                        cerbos_address=cerbos.grpc_address, oidc_issuer=oidc_issuer,
                        prefix=prefix, staleness_seconds=STALENESS_SECONDS)
    id_tokens = [oidc_login(oidc_issuer, f"agent-user-{n}-{uuid.uuid4().hex[:6]}",
                            claims={"roles": ["sales_rep"]}).id_token for n in range(AGENTS)]
    stack = FaultStack(own_redis, cerbos, fleet, oidc_issuer, prefix, id_tokens)
    try:
        start_all(fleet.processes)
        asyncio.run(_warm_up(stack))
        yield stack
    finally:
        stop_all(stack.processes)


async def _warm_up(stack: FaultStack) -> None:
    """Traffic until every broker minted and every MCP server served: their first requests
    (lazy imports, JWKS discovery, the Cerbos channel) can block a server's event loop for
    over a second on two busy cores, long enough to stale a revocation feed with a tight
    bound. The tests are about faults in a fleet that is serving, not about its cold start."""
    traffic = stack.traffic()
    async with traffic.running():
        await recovered(traffic, since=0.0, within=60.0)
        await asyncio.sleep(1.0)


@pytest.fixture
def stack(fault_stack: FaultStack) -> Iterator[FaultStack]:
    """The package's fleet, whole again after the test (a failed test may leave one dead)."""
    yield fault_stack
    dead = [p for p in fault_stack.processes if not p.is_running]
    if dead:
        start_all(dead)
