"""When Redis or Cerbos does not answer: 503 temporarily_unavailable, nothing minted or
half-written, readiness says so, and service resumes when the dependency returns."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.integration.conftest import BrokerFactory, basic, exchange_form
from tests.support.services import REPO_ROOT, start_cerbos, start_redis

RECOVERY_SECONDS = 10


def _exchange(broker, token: str):
    with broker.client() as http:
        return http.post("/oauth2/token", data=exchange_form(token),
                         headers=basic("research-agent"))


def _eventually_ok(broker, token: str) -> None:
    """Recovery is bounded, not instant: connections re-establish with a short backoff."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while (status := _exchange(broker, token).status_code) != 200:
        assert status == 503, status
        assert time.monotonic() < deadline, "no recovery after the dependency returned"
        time.sleep(0.1)


def _session_keys(url: str) -> list[bytes]:
    return list(redis.Redis.from_url(url).scan_iter("ab:session:*"))


def test_redis_down_means_503_then_recovery(start_broker: BrokerFactory, cerbos_address: str,
                                            id_tokens: dict, tmp_path: Path) -> None:
    own_redis = start_redis(tmp_path / "redis")
    try:
        broker = start_broker(redis_url=own_redis.url, cerbos_address=cerbos_address,
                              redis_timeout_ms=300)
        assert _exchange(broker, id_tokens["alice"]).status_code == 200
        own_redis.kill()
        response = _exchange(broker, id_tokens["alice"])
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert "access_token" not in response.text
        assert response.headers["cache-control"] == "no-store"
        with broker.client() as http:
            ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["redis"] == "unavailable"
        own_redis.restart()
        _eventually_ok(broker, id_tokens["alice"])
    finally:
        own_redis.stop()


def test_cerbos_down_means_503_and_no_session(start_broker: BrokerFactory, id_tokens: dict,
                                              tmp_path: Path) -> None:
    own_redis = start_redis(tmp_path / "redis")
    own_cerbos = start_cerbos(REPO_ROOT / "policies", tmp_path / "cerbos")
    try:
        broker = start_broker(redis_url=own_redis.url, cerbos_address=own_cerbos.grpc_address)
        assert _exchange(broker, id_tokens["alice"]).status_code == 200
        assert len(_session_keys(own_redis.url)) == 1
        own_cerbos.kill()
        response = _exchange(broker, id_tokens["alice"])
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"
        assert len(_session_keys(own_redis.url)) == 1, "nothing written when the PDP is down"
        with broker.client() as http:
            assert http.get("/readyz").json()["checks"]["cerbos"] == "unavailable"
        own_cerbos.restart()
        _eventually_ok(broker, id_tokens["alice"])
    finally:
        own_cerbos.stop()
        own_redis.stop()
