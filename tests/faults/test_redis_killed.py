"""Redis SIGKILLed under mixed load, then restarted from its AOF on the same port.

While it is down: every exchange is a 503 `temporarily_unavailable` with no token (never a
500), nothing is half-written, the MCP servers keep serving within their staleness bound and
refuse every token past it. When it returns: exchanges and calls succeed again, with no
process restarted, and a revocation made before the kill still refuses its token everywhere.
(A crash losing no revocation at the broker: tests/integration/test_revocation_durability.py.)
"""

from __future__ import annotations

import pytest
import redis

from bench.traffic import CALL, EXCHANGE, LIST, OK, REFUSED, UNAVAILABLE
from broker.sessions import SessionRecord
from broker.stores.redis import RedisKeys
from tests.faults.conftest import STALENESS_SECONDS, FaultStack, outage

SERVING_WITHIN_S = STALENESS_SECONDS / 2  # the last ping can be a ping interval before the kill
REFUSING_AFTER_S = STALENESS_SECONDS + 0.5  # the bound, plus scheduling on two busy cores

pytestmark = pytest.mark.integration


async def test_redis_killed_mid_load(stack: FaultStack) -> None:
    revoked_token, revoked_sid = stack.mint(user=0)
    stack.revoke_session(revoked_sid)
    stack.refused_everywhere(revoked_token)
    before = stack.session_ids()
    pids = [p.pid for p in stack.fleet.processes]

    traffic = stack.traffic()
    async with traffic.running():
        times = await outage(traffic, stack.redis, lead_in=1.5, down_for=REFUSING_AFTER_S + 1.0)

    assert traffic.unexpected() == [], traffic.unexpected()[:5]
    assert {e.outcome for e in traffic.events if e.ended < times.killing} == {OK}
    during = times.during(traffic)
    # the broker fails closed: 503 temporarily_unavailable, no-store, no token (Traffic checks)
    assert {e.outcome for e in during if e.kind == EXCHANGE} == {UNAVAILABLE}
    # the plugin serves within its staleness bound, then refuses every token
    mcp = [e for e in during if e.kind != EXCHANGE]
    early = [e for e in mcp if e.ended < times.killed + SERVING_WITHIN_S]
    late = [e for e in mcp if e.started >= times.killed + REFUSING_AFTER_S]
    assert early and {e.outcome for e in early} == {OK}
    assert late and {e.outcome for e in late} == {REFUSED}
    # recovered without restarting anything but Redis, and stays so
    assert [p.pid for p in stack.fleet.processes] == pids
    assert traffic.tally(since=times.back).keys() <= {(k, OK) for k in (EXCHANGE, CALL, LIST)}

    # nothing half-written: every new session is whole, each one a 200 named among them; any
    # other is an exchange whose script Redis ran and made durable (fsync always) but whose
    # reply died with it, so only an exchange in flight at the kill can have left one
    minted = {e.sid for e in traffic.events if e.kind == EXCHANGE and e.outcome == OK}
    new = stack.session_ids() - before
    in_flight = [e for e in traffic.events if e.kind == EXCHANGE and e.outcome == UNAVAILABLE
                 and e.started < times.killed]
    assert minted <= new
    assert len(new - minted) <= len(in_flight), (new - minted, len(in_flight))
    keys = RedisKeys(stack.prefix)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        raws = client.mget([keys.session(sid) for sid in sorted(new)])
        assert None not in raws
        records = [SessionRecord.from_json(raw) for raw in raws if raw is not None]
        pipe = client.pipeline(transaction=False)
        for record in records:
            pipe.zscore(keys.all_sessions(), record.sid)
            pipe.zscore(keys.by_user(record.subject), record.sid)
            pipe.zscore(keys.by_agent(record.agent), record.sid)
            pipe.get(keys.jti(record.jti))
        answers = pipe.execute()
    finally:
        client.close()
    for n, record in enumerate(records):
        in_all, by_user, by_agent, jti_sid = answers[4 * n: 4 * n + 4]
        assert None not in (in_all, by_user, by_agent) and jti_sid == record.sid, record.sid

    # the revocation made before the kill holds at the MCP servers and at the broker
    assert stack.statuses(revoked_token) == [401] * len(stack.fleet.servers)
    assert not stack.is_active(revoked_token, broker=1)
