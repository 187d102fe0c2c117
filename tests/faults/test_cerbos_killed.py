"""Cerbos SIGKILLed under mixed load, then restarted on the same ports.

While it is down every exchange is a 503 `temporarily_unavailable` with no token, every tool
call is denied and every tools/list is empty (the token itself is still accepted: this is
authorization failing closed, not authentication). When it returns, brokers and MCP servers
reconnect by themselves: none of them is restarted.

The MCP servers may reuse a decision Cerbos gave shortly before it died
(mcp_plugin/decision_cache.py, 1 s by default): calls are judged past that.
"""

from __future__ import annotations

import pytest

from bench.traffic import CALL, DENIED, EXCHANGE, LIST, OK, UNAVAILABLE
from tests.faults.conftest import FaultStack, outage

CACHED_DECISIONS_S = 1.5  # the decision cache's 1 s, plus scheduling on two busy cores

pytestmark = pytest.mark.integration


async def test_cerbos_killed_mid_load(stack: FaultStack) -> None:
    pids = [p.pid for p in stack.fleet.processes]
    traffic = stack.traffic()
    async with traffic.running():
        times = await outage(traffic, stack.cerbos, lead_in=1.0,
                             down_for=CACHED_DECISIONS_S + 1.5)

    assert traffic.unexpected() == [], traffic.unexpected()[:5]
    assert {e.outcome for e in traffic.events if e.ended < times.killing} == {OK}
    during = times.during(traffic)
    assert {e.outcome for e in during if e.kind == EXCHANGE} == {UNAVAILABLE}
    uncached = [e for e in during if e.started >= times.killed + CACHED_DECISIONS_S]
    by_kind = {kind: {e.outcome for e in uncached if e.kind == kind} for kind in (CALL, LIST)}
    assert by_kind == {CALL: {DENIED}, LIST: {DENIED}}, by_kind
    assert [p.pid for p in stack.fleet.processes] == pids
    assert {e.outcome for e in traffic.events if e.started >= times.back} == {OK}
