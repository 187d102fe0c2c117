"""One of two broker processes SIGKILLed under mixed load.

The agents spread their exchanges over both brokers and move to the other when one does not
answer. The broker killed is the one whose URL is the issuer, where the MCP servers discovered
the signing keys. The other keeps minting; tokens of either broker, minted before or after the
kill, verify at every MCP server (the keys file is shared, and the servers keep the keys they
fetched); a session the dead broker opened is visible and revocable through the live one.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.traffic import CALL, EXCHANGE, LIST, OK, UNREACHABLE
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration


async def test_one_of_two_brokers_killed_mid_load(stack: FaultStack) -> None:
    victim, survivor = stack.fleet.brokers
    servers = len(stack.fleet.servers)
    old_token, old_sid = stack.mint(broker=0)
    traffic = stack.traffic()
    try:
        async with traffic.running():
            await asyncio.sleep(1.5)
            killing = time.monotonic()
            await asyncio.to_thread(victim.kill)
            killed = time.monotonic()
            await asyncio.sleep(2.5)

        assert traffic.unexpected() == [], traffic.unexpected()[:5]
        assert {e.outcome for e in traffic.events if e.ended < killing} == {OK}
        after = [e for e in traffic.events if e.started >= killed]
        # the dead broker does not answer; the live one mints every token the agents ask for
        assert {e.outcome for e in after if e.kind == EXCHANGE and e.target == 0} <= {UNREACHABLE}
        assert {e.outcome for e in after if e.kind == EXCHANGE and e.target == 1} == {OK}
        # and every tool call and list succeeds, on every server, all along
        mcp = [e for e in traffic.events if e.kind in (CALL, LIST)]
        assert {e.outcome for e in mcp} == {OK}
        assert {e.target for e in after if e.kind in (CALL, LIST)} == set(range(servers))

        # a token the dead broker minted and one the live broker mints now verify everywhere
        new_token, _ = await asyncio.to_thread(stack.mint, 1)
        for token in (old_token, new_token):
            assert await asyncio.to_thread(stack.statuses, token) == [200] * servers
        # the dead broker's sessions are the live broker's to see and revoke
        sids = {e.sid for e in traffic.events if e.kind == EXCHANGE and e.minted_by == 0
                and e.outcome == OK} | {old_sid}
        for sid in sorted(sids)[:5]:
            seen = await asyncio.to_thread(stack.admin, "GET", f"/admin/sessions/{sid}",
                                           broker=1)
            assert seen.status_code == 200 and seen.json()["sid"] == sid, seen.text
        await asyncio.to_thread(stack.revoke_session, old_sid, broker=1)
        await asyncio.to_thread(stack.refused_everywhere, old_token)
        assert not await asyncio.to_thread(stack.is_active, old_token, broker=1)
        assert await asyncio.to_thread(stack.statuses, new_token) == [200] * servers
    finally:
        await asyncio.to_thread(victim.start)  # the same port: the fleet is whole again
    assert survivor.is_running
