"""The Cerbos REST policy point against the real PDP: the same answers as the gRPC one, fails
closed within its timeout, recovers, reuses its connections, and serves a whole exchange."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.config import BrokerSettings
from broker.errors import DependencyUnavailable
from broker.http.services import _policy_point
from broker.pdp.cerbos import AdminCheck, AdminPrincipal, CerbosPolicyPoint
from broker.pdp.cerbos_http import CerbosHttpPolicyPoint
from broker.ports import DelegationQuestion
from tests.integration.conftest import CRM, BrokerFactory, basic, exchange_form
from tests.support.services import REPO_ROOT, CerbosService, start_cerbos

pytestmark = pytest.mark.integration

SCOPES = ["crm:read", "crm:write", "crm:delete", "crm:export", "email:send", "crm:purge"]
CLAIMS = {"email": "u@example.com", "email_verified": True, "aud": ["agent-host"],
          "nested": {"a": [1, 2.5, None]}, "nan": float("nan"), "huge": 10**400}
QUESTIONS = [
    DelegationQuestion(sub, roles, CLAIMS, agent, CRM, SCOPES, actors)
    for sub, roles in [("alice", ("sales_rep",)), ("carol", ("crm_admin",)),
                       ("bob", ("support",)), ("dave", ()), ("erin", ("crm_admin", "bad role"))]
    for agent, actors in [("research-agent", ("research-agent",)),
                          ("summarizer-agent", ("research-agent", "summarizer-agent"))]
]
ANYONE = {"user": "", "agent": ""}
ADMIN_CHECKS = [AdminCheck("sessions:list", "all-sessions", ANYONE),
                AdminCheck("audit:read", "all-audit", ANYONE),
                AdminCheck("revocations:create", "revoke-agent", {**ANYONE, "kind": "agent"}),
                AdminCheck("sessions:list", "own-sessions", {"user": "root", "agent": ""})]
ADMINS = [AdminPrincipal("root", ("admin",)), AdminPrincipal("ann", ("auditor",)),
          AdminPrincipal("root", ("sales_rep",), {"email": "r@x"})]


@contextlib.asynccontextmanager
async def points(cerbos: CerbosService, *, chunk: int = 50, timeout_ms: int = 2000
                 ) -> AsyncIterator[tuple[CerbosPolicyPoint, CerbosHttpPolicyPoint]]:
    grpc = CerbosPolicyPoint(cerbos.grpc_address, timeout_ms=timeout_ms,
                             max_resources_per_request=chunk)
    rest = CerbosHttpPolicyPoint(cerbos.http_url, timeout_ms=timeout_ms,
                                 max_resources_per_request=chunk)
    try:
        yield grpc, rest
    finally:
        await grpc.close()
        await rest.close()


@pytest.mark.parametrize("chunk", [50, 2])
async def test_same_answers_as_grpc(cerbos_service: CerbosService, chunk: int) -> None:
    async with points(cerbos_service, chunk=chunk) as (grpc, rest):
        allowed = []
        for question in QUESTIONS:
            expected = await grpc.delegable_scopes(question)
            assert await rest.delegable_scopes(question) == expected, question
            allowed.append(expected)
        if chunk == 2:  # 6 scopes: three chunks at once, each on its own connection
            assert rest.pool.opened == 3
    # the questions tell the policy's cases apart, or the comparison would prove little
    assert len(set(allowed)) >= 4 and frozenset() in allowed
    assert frozenset({"crm:read", "crm:write", "crm:delete"}) <= allowed[2]


async def test_the_session_id_is_cerboss_request_id_on_both_transports(
        cerbos_service: CerbosService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cerbos echoes the requestId it was sent: its decision log names the agent session."""
    question = replace(QUESTIONS[0], request_id="session-7Hq2")
    echoed: list[str] = []
    async with points(cerbos_service, chunk=2) as (grpc, rest):
        grpc_check, rest_request = grpc._client.check_resources, rest.pool.request

        async def grpc_spy(*args: Any, **kwargs: Any) -> Any:
            response = await grpc_check(*args, **kwargs)
            echoed.append(response.request_id)
            return response

        async def rest_spy(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
            status, answer = await rest_request(method, path, body)
            echoed.append(json.loads(answer)["requestId"])
            return status, answer

        monkeypatch.setattr(grpc._client, "check_resources", grpc_spy)
        monkeypatch.setattr(rest.pool, "request", rest_spy)
        assert await grpc.delegable_scopes(question) == await rest.delegable_scopes(question)
    assert echoed == ["session-7Hq2"] * 6  # three chunks each, one id


async def test_the_configured_connection_limit_holds(cerbos_service: CerbosService) -> None:
    """`cerbos.rest_max_connections: 1`: three chunks at once share one connection in turn."""
    settings = BrokerSettings(cerbos={"address": cerbos_service.http_url,
                                      "max_resources_per_request": 2,
                                      "rest_max_connections": 1})
    rest = _policy_point(settings)
    assert isinstance(rest, CerbosHttpPolicyPoint)
    async with points(cerbos_service) as (grpc, _):
        try:
            assert await rest.delegable_scopes(QUESTIONS[0]) == await grpc.delegable_scopes(
                QUESTIONS[0])
            assert rest.pool.opened == 1
        finally:
            await rest.close()


async def test_admin_checks_as_grpc(cerbos_service: CerbosService) -> None:
    async with points(cerbos_service) as (grpc, rest):
        answers = [await rest.check_admin(p, ADMIN_CHECKS) for p in ADMINS]
        assert answers == [await grpc.check_admin(p, ADMIN_CHECKS) for p in ADMINS]
    assert answers[0] == [True, True, True, True]
    assert answers[2] == [False, False, False, True]


async def test_ping_and_connection_reuse(cerbos_service: CerbosService) -> None:
    async with points(cerbos_service) as (_, rest):
        await rest.ping()
        for question in QUESTIONS * 3:
            await rest.delegable_scopes(question)
        assert rest.pool.opened == 1
        assert rest.pool.idle == 1
        await asyncio.gather(*(rest.delegable_scopes(q) for q in QUESTIONS * 4))
        assert 1 < rest.pool.opened <= 16  # bounded: 40 at once share at most 16
        opened = rest.pool.opened
        await asyncio.gather(*(rest.delegable_scopes(q) for q in QUESTIONS))
        assert rest.pool.opened == opened


@pytest.fixture
def own_cerbos(tmp_path: Path) -> Iterator[CerbosService]:
    service = start_cerbos(REPO_ROOT / "policies", tmp_path / "cerbos")
    try:
        yield service
    finally:
        service.stop()


async def _unavailable_within(call: object, seconds: float) -> None:
    start = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        await call  # type: ignore[misc]
    assert time.monotonic() - start < seconds


async def test_cerbos_down_fails_closed_quickly_then_recovers(
        own_cerbos: CerbosService, caplog: pytest.LogCaptureFixture) -> None:
    question = QUESTIONS[0]
    async with points(own_cerbos, timeout_ms=1000) as (_, rest):
        expected = await rest.delegable_scopes(question)
        own_cerbos.kill()
        # refused connections: far sooner than the timeout
        await _unavailable_within(rest.delegable_scopes(question), 0.5)
        await _unavailable_within(rest.ping(), 0.5)
        await _unavailable_within(rest.check_admin(ADMINS[0], ADMIN_CHECKS), 0.5)
        assert "u@example.com" not in caplog.text and "alice" not in caplog.text
        assert "cerbos (REST) did not answer: ConnectionRefusedError" in caplog.text
        own_cerbos.restart()
        assert await rest.delegable_scopes(question) == expected  # no backoff to wait out
        await rest.ping()


async def test_stale_keep_alive_connections_after_a_restart_are_not_an_error(
        own_cerbos: CerbosService) -> None:
    async with points(own_cerbos) as (_, rest):
        answers = await asyncio.gather(*(rest.delegable_scopes(q) for q in QUESTIONS[:4]))
        assert rest.pool.idle >= 2
        opened = rest.pool.opened
        # Blocking: the loop does not run, so it has not seen the pooled connections close and
        # the first request goes out on a dead one, then is retried on a new connection.
        own_cerbos.restart()
        assert await rest.delegable_scopes(QUESTIONS[0]) == answers[0]
        assert rest.pool.opened == opened + 1


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """Accepts connections and reads, never answers: a hung PDP."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


async def test_a_pdp_that_never_answers_fails_closed_within_the_timeout() -> None:
    with silent_server() as (url, accepted):
        rest = CerbosHttpPolicyPoint(url, timeout_ms=300, max_resources_per_request=2)
        try:
            start = time.monotonic()
            with pytest.raises(DependencyUnavailable):
                await rest.delegable_scopes(QUESTIONS[0])  # three chunks, all hang
            assert 0.29 < time.monotonic() - start < 1.0
            await _unavailable_within(rest.ping(), 1.0)
            assert rest.pool.idle == 0  # a connection cut off mid-request is never reused
            assert len(accepted) == 4
        finally:
            await rest.close()


def test_a_whole_exchange_over_rest(start_broker: BrokerFactory, redis_url: str,
                                    cerbos_service: CerbosService,
                                    id_tokens: dict[str, str]) -> None:
    broker = start_broker(redis_url=redis_url, cerbos_address=cerbos_service.http_url)
    assert broker.settings.cerbos.rest
    with broker.client() as http:
        response = http.post("/oauth2/token", headers=basic("research-agent"),
                             data=exchange_form(id_tokens["alice"],
                                                scope="crm:read crm:write crm:delete"))
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "crm:read crm:write"  # sales_rep: no delete
        carol = http.post("/oauth2/token", headers=basic("research-agent"),
                          data=exchange_form(id_tokens["carol"], scope="crm:delete"))
        assert carol.json()["scope"] == "crm:delete"
        assert http.get("/readyz").json()["checks"]["cerbos"] == "ok"


def test_an_exchange_over_rest_fails_closed_when_cerbos_is_down(
        start_broker: BrokerFactory, redis_url: str, own_cerbos: CerbosService,
        id_tokens: dict[str, str]) -> None:
    broker = start_broker(redis_url=redis_url, cerbos_address=own_cerbos.http_url)
    form = exchange_form(id_tokens["alice"], scope="crm:read")
    with broker.client() as http:
        assert http.post("/oauth2/token", data=form,
                         headers=basic("research-agent")).status_code == 200
        own_cerbos.kill()
        response = http.post("/oauth2/token", data=form, headers=basic("research-agent"))
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert "access_token" not in response.text
        assert http.get("/readyz").json()["checks"]["cerbos"] == "unavailable"
        own_cerbos.restart()
        assert http.post("/oauth2/token", data=form,
                         headers=basic("research-agent")).status_code == 200
