"""Revocations written into Redis by hand, as docs/revocation-protocol.md says the broker
writes them (HSET + ZADD + PUBLISH), so plugin tests are pinned to the document rather than to
the broker's code; plus small helpers for tests of a `RevocationView`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import redis

from mcp_plugin import RevocationUnavailable, RevocationView, TokenFacts

Entry = tuple[str, int, int]
"""field, cutoff, forget_at"""


def revoke(client: redis.Redis, prefix: str, *entries: Entry, store: bool = True,
           publish: bool = True) -> None:
    """One revocation. `store=False` or `publish=False` leaves out one half, so a test can
    tell the hash path (a full sync) from the message path (live)."""
    rid = f"rev_{uuid.uuid4().hex[:8]}"
    for field, cutoff, forget_at in entries if store else ():
        client.hset(f"{prefix}revoked", field, json.dumps({"c": cutoff, "f": forget_at, "r": rid}))
        client.zadd(f"{prefix}revoked:forget", {field: forget_at})
    if publish:
        message = {"v": 1, "entries": [[f, c, fa, rid] for f, c, fa in entries]}
        client.publish(f"{prefix}revoked", json.dumps(message))


def forget(client: redis.Redis, prefix: str) -> None:
    """Remove a test's revocation set from a shared Redis."""
    client.delete(f"{prefix}revoked", f"{prefix}revoked:forget")


def unavailable(view: RevocationView, facts: TokenFacts) -> bool:
    """True if the view refuses to answer (fails closed)."""
    try:
        view.is_revoked(facts)
    except RevocationUnavailable:
        return True
    return False


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll `check` until it holds; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)
