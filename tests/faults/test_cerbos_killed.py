"""Cerbos SIGKILLed under mixed load, then restarted on the same ports.

While it is down every exchange is a 503 `temporarily_unavailable` with no token, every tool
call is denied and every tools/list is empty (the token itself is still accepted: this is
authorization failing closed, not authentication). When it returns, brokers and MCP servers
reconnect by themselves: none of them is restarted.

The MCP servers may reuse a decision Cerbos gave shortly before it died
(mcp_plugin/decision_cache.py, 1 s by default): calls are judged past that.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.traffic import CALL, DENIED, EXCHANGE, LIST, OK, UNAVAILABLE
from tests.faults.conftest import FaultStack, recovered

CACHED_DECISIONS_S = 1.5  # the decision cache's 1 s, plus scheduling on two busy cores

pytestmark = pytest.mark.integration


async def test_cerbos_killed_mid_load(stack: FaultStack) -> None:
    pids = [p.pid for p in stack.fleet.processes]
    traffic = stack.traffic()
    async with traffic.running():
        await asyncio.sleep(1.0)
        killing = time.monotonic()
        await asyncio.to_thread(stack.cerbos.kill)
        killed = time.monotonic()
        await asyncio.sleep(CACHED_DECISIONS_S + 1.5)
        restarting = time.monotonic()
        await asyncio.to_thread(stack.cerbos.start)  # same ports
        back = await recovered(traffic, restarting)
        await asyncio.sleep(0.5)

    assert traffic.unexpected() == [], traffic.unexpected()[:5]
    assert {e.outcome for e in traffic.events if e.ended < killing} == {OK}
    outage = [e for e in traffic.events if killed <= e.started < restarting]
    assert {e.outcome for e in outage if e.kind == EXCHANGE} == {UNAVAILABLE}
    uncached = [e for e in outage if e.started >= killed + CACHED_DECISIONS_S]
    by_kind = {kind: {e.outcome for e in uncached if e.kind == kind} for kind in (CALL, LIST)}
    assert by_kind == {CALL: {DENIED}, LIST: {DENIED}}, by_kind
    assert [p.pid for p in stack.fleet.processes] == pids
    assert {e.outcome for e in traffic.events if e.started >= back} == {OK}
