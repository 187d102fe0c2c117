"""The signing key rotated under mixed load, as an operator of several brokers would
(`agent-broker keys rotate --activate-in 3` on the keys file they share): no MCP server
refuses a single token, and no exchange fails.

Both brokers re-read the file within a second and publish the new key; at its activation time
both sign with it; each MCP server fetches the issuer's JWKS when the first token signed with
it arrives (the others arriving meanwhile wait for that fetch); the old key stays published, so
the tokens it signed keep verifying until they expire. Why `--activate-in` with several
brokers: docs/operations.md ("Signing keys").
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.traffic import EXCHANGE, OK
from tests.faults.conftest import FaultStack
from tests.support.services import REPO_ROOT

ACTIVATE_IN_S = 3  # more than the brokers' 1 s re-read of the keys file, with a margin

pytestmark = pytest.mark.integration


def _keys(stack: FaultStack) -> dict[str, int]:
    """kid -> activation time (epoch seconds), from the keys file both brokers share."""
    config = yaml.safe_load(stack.fleet.brokers[0].config_path.read_text())
    keys = json.loads(Path(config["signing"]["keys_file"]).read_text())
    return {key["kid"]: key["activates_at"] for key in keys["keys"]}


def _rotate(stack: FaultStack) -> None:
    subprocess.run([sys.executable, "-c", "from broker.cli import app; app()", "keys", "rotate",
                    "--config", str(stack.fleet.brokers[0].config_path),
                    "--activate-in", str(ACTIVATE_IN_S)],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=60)


async def test_key_rotation_under_load(stack: FaultStack) -> None:
    servers = len(stack.fleet.servers)
    before = _keys(stack)
    old_token, _ = stack.mint(broker=0)
    traffic = stack.traffic()
    async with traffic.running():
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_rotate, stack)
        ((new_kid, activates_at),) = (_keys(stack).items() - before.items())
        active = time.monotonic() + activates_at - time.time()  # on the traffic's clock
        await asyncio.sleep(active + 2.0 - time.monotonic())

    # zero failed verifications, zero failed exchanges
    failed = [e for e in traffic.events if e.outcome != OK]
    assert failed == [], failed[:5]
    # both brokers sign with the new key, and its tokens were served by every MCP server
    late = [e for e in traffic.events if e.started >= active + 0.1]
    assert {(e.target, e.kid) for e in late if e.kind == EXCHANGE} == {(0, new_kid), (1, new_kid)}
    assert {e.target for e in late if e.kind != EXCHANGE and e.kid == new_kid} == set(
        range(servers))
    # the old key still verifies what it signed
    assert await asyncio.to_thread(stack.statuses, old_token) == [200] * servers
