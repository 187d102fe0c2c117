"""Revocations survive a crash of Redis (AOF) and are known to a broker started afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import BrokerFactory, basic
from tests.integration.revocation_support import ADMIN_AUDIENCE, RevocationStack, start_stack
from tests.support.services import RedisService, start_redis


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisService]:
    service = start_redis(tmp_path, appendonly=True)
    yield service
    service.stop()


def test_a_redis_crash_loses_no_revocation(aof_redis: RedisService, start_broker: BrokerFactory,
                                           cerbos_address: str, oidc_issuer: str) -> None:
    stack: RevocationStack = start_stack(start_broker, redis_url=aof_redis.url,
                                         cerbos_address=cerbos_address,
                                         oidc_issuer=oidc_issuer, redis_timeout_ms=300)
    user, id_token = stack.login()
    by_session, kept = stack.mint(id_token), stack.mint(id_token)
    child = stack.delegate(by_session)
    other_user, other_login = stack.login()
    by_user = stack.mint(other_login)
    admin = stack.admin_token()
    assert stack.admin("POST", "/admin/revocations", admin,
                       json={"session": by_session.sid}).status_code == 201
    assert stack.admin("POST", "/admin/revocations", admin,
                       json={"user": other_user}).status_code == 201

    aof_redis.kill()  # SIGKILL: no chance to save anything more
    with stack.http() as http:  # while Redis is down: fail closed, never "inactive"
        down = http.post("/oauth2/introspect", data={"token": kept.token},
                         headers=basic("crm-server"))
    assert down.status_code == 503
    aof_redis.start()
    assert not stack.is_active(by_session.token)
    assert not stack.is_active(child.token)
    assert not stack.is_active(by_user.token)
    assert stack.is_active(kept.token)

    # a broker process started now, with nothing in memory, refuses what was revoked
    fresh = start_broker(redis_url=aof_redis.url, cerbos_address=cerbos_address,
                         redis_key_prefix=stack.prefix, admin={"audiences": [ADMIN_AUDIENCE]})
    second = RevocationStack(fresh, oidc_issuer, stack.prefix)
    refused = second.exchange(other_login)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert second.exchange(id_token).status_code == 200
    records = second.admin("GET", f"/admin/audit?user={other_user}", admin).json()["records"]
    assert [r["type"] for r in records] == ["revocation", "exchange"]
    assert second.admin("GET", f"/admin/sessions?user={user}", admin).json()["sessions"]
