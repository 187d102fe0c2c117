"""A short run of mixed traffic against the whole fleet: no request fails (the 60 s version,
with memory, is `python -m bench --only load`)."""

from __future__ import annotations

import asyncio

import pytest

from bench.traffic import CALL, EXCHANGE, LIST, OK
from tests.faults.conftest import FaultStack

LOAD_SECONDS = 6.0

pytestmark = pytest.mark.integration


async def test_mixed_load_on_two_brokers_and_three_mcp_servers_has_no_error(
        stack: FaultStack) -> None:
    traffic = stack.traffic()
    async with traffic.running():
        await asyncio.sleep(LOAD_SECONDS)
    failed = [e for e in traffic.events if e.outcome != OK]
    assert not failed, failed[:5]
    tally = traffic.tally()
    assert min(tally[EXCHANGE, OK], tally[CALL, OK], tally[LIST, OK]) > 0, tally
    # every broker's tokens were served by every MCP server
    served = {(e.target, e.minted_by) for e in traffic.events if e.kind in (CALL, LIST)}
    assert served == {(s, b) for s in range(len(stack.fleet.servers))
                      for b in range(len(stack.fleet.brokers))}
