"""Revoked-session entries written straight into Redis, in the broker's format
(docs/revocation-protocol.md): a million through the admin API would take minutes and
measure the broker, when these measures are about the plugin's side.

Fields look like the broker's (`sid:` + `secrets.token_urlsafe(16)`), so the plugin's dict
holds keys of the real size; every entry is live for an hour, so none is pruned meanwhile.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from itertools import chain, islice

import redis

CHUNK = 10_000  # fields per HSET/ZADD command: big enough to be fast, small for Redis' latency
LIVE_SECONDS = 3600


def session_fields(count: int) -> Iterator[str]:
    for _ in range(count):
        yield f"sid:{secrets.token_urlsafe(16)}"


def _chunks(fields: Iterator[str]) -> Iterator[list[str]]:
    while batch := list(islice(fields, CHUNK)):
        yield batch


def load_hash(redis_url: str, prefix: str, count: int, *, include: Sequence[str] = ()) -> None:
    """HSET `count` session entries into `<prefix>revoked` (and ZADD their forget_at), no
    PUBLISH: an MCP server started afterwards must learn them from its full sync. The fields
    in `include` are among them (a canary: a server refusing it has the set loaded)."""
    forget_at = int(time.time()) + LIVE_SECONDS
    value = json.dumps({"c": forget_at, "f": forget_at, "r": "bench"})
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(f"{prefix}revoked", f"{prefix}revoked:forget")
        pipe = client.pipeline(transaction=False)
        fields = chain(include, session_fields(count - len(include)))
        for batch in _chunks(fields):
            pipe.hset(f"{prefix}revoked", mapping=dict.fromkeys(batch, value))
            pipe.zadd(f"{prefix}revoked:forget", dict.fromkeys(batch, forget_at))
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
        stored = client.hlen(f"{prefix}revoked")
    finally:
        client.close()
    if stored != count:
        raise RuntimeError(f"{prefix}revoked holds {stored} entries, not {count}")


def publish_sessions(redis_url: str, prefix: str, count: int, *, last_jti: str) -> None:
    """`count` session revocations as the broker makes them, one message each (HSET, ZADD,
    PUBLISH), then one more revoking token `last_jti`: a reader that refuses that token has
    applied every message before it, since one subscription delivers them in order."""
    forget_at = int(time.time()) + LIVE_SECONDS
    channel = f"{prefix}revoked"
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        fields = [*session_fields(count), f"jti:{last_jti}"]
        for i, field in enumerate(fields):
            rid = f"bench-{i}"
            pipe.hset(channel, field, json.dumps({"c": forget_at, "f": forget_at, "r": rid}))
            pipe.zadd(f"{prefix}revoked:forget", {field: forget_at})
            pipe.publish(channel, json.dumps({"v": 1, "entries": [[field, forget_at,
                                                                   forget_at, rid]]}))
            if len(pipe) >= 3 * 1000:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


def forget(redis_url: str, *prefixes: str) -> None:
    """Drop a measure's revocation sets, so the next measure's Redis is small again."""
    client = redis.Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            client.delete(f"{prefix}revoked", f"{prefix}revoked:forget")
    finally:
        client.close()
