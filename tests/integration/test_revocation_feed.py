"""RedisRevocationFeed against a real Redis, entries written by hand as the protocol document
says (tests.support.revocations), so the reader is pinned to docs/revocation-protocol.md and
not to the broker's code. Tests sharing the session Redis use a key prefix of their own;
tests that kill Redis get a private one."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
import tracemalloc
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from mcp_plugin import RedisRevocationFeed, TokenFacts
from tests.support.revocations import eventually, forget, revoke, unavailable
from tests.support.services import free_port, start_redis

pytestmark = pytest.mark.integration

FeedFactory = Callable[..., RedisRevocationFeed]


def token(issued_at: int, **over: Any) -> TokenFacts:
    facts: dict[str, Any] = {"jti": "j1", "session": "s1", "subject": "alice",
                             "client_id": "summarizer",
                             "actors": ("summarizer", "research-agent"), "issued_at": issued_at}
    return TokenFacts(**{**facts, **over})


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def writer(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(writer: redis.Redis) -> Iterator[str]:
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    yield prefix
    forget(writer, prefix)


@pytest.fixture
async def feeds() -> AsyncIterator[FeedFactory]:
    made: list[RedisRevocationFeed] = []

    def make(url: str, prefix: str, **options: Any) -> RedisRevocationFeed:
        options.setdefault("staleness_seconds", 1.0)
        made.append(RedisRevocationFeed(url, key_prefix=prefix, **options))
        return made[-1]

    yield make
    for feed in made:
        await feed.aclose()


async def test_start_loads_every_stored_revocation(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    now = int(time.time())
    writer.hset(f"{prefix}revoked", mapping={  # more than one HSCAN chunk
        f"jti:bulk-{i}": json.dumps({"c": now + 600, "f": now + 600, "r": "r"})
        for i in range(2500)})
    revoke(writer, prefix, ("sid:s1", now + 600, now + 600), publish=False)
    feed = feeds(redis_url, prefix)
    await feed.start()  # waits for the first sync
    assert feed.is_fresh
    assert feed.entry_count == 2501
    assert feed.is_revoked(token(now))
    assert feed.is_revoked(token(now, jti="bulk-2499", session="other"))


async def test_malformed_stored_entries_are_skipped_one_by_one(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A page is parsed as one JSON array; a page that does not parse that way is parsed entry
    by entry, so malformed entries cost only themselves, never their page's neighbours. (Two
    bad values that combine into valid JSON are caught here only because "not json" breaks
    the page: with entries balancing out in count they would shift; see `_load_page`.)"""
    now = int(time.time())
    good = json.dumps({"c": now + 600, "f": now + 600, "r": "r"})
    writer.hset(f"{prefix}revoked", mapping={
        **{f"jti:ok-{i}": good for i in range(50)},
        "jti:bad-open": '{"c": 1, "r": "}', "jti:bad-close": '{","f": 2}',
        "jti:bad-two": good + "," + good, "jti:bad-text": "not json", "jti:bad-list": "[1]",
        "jti:bad-number": json.dumps({"c": "soon", "f": now + 600}),
    })
    feed = feeds(redis_url, prefix)
    with caplog.at_level(logging.WARNING, logger="mcp_plugin.revocation"):
        await feed.start()
    assert feed.is_fresh
    assert feed.entry_count == 50
    assert all(feed.is_revoked(token(now, jti=f"ok-{i}", session="x")) for i in range(50))
    assert "skipped 6 malformed entries" in caplog.text


async def test_live_revocation_is_applied(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    now = int(time.time())
    feed = feeds(redis_url, prefix)
    await feed.start()
    assert not feed.is_revoked(token(now))
    revoke(writer, prefix, ("jti:j1", now + 600, now + 600), store=False)  # the message alone
    await eventually(lambda: feed.is_revoked(token(now)))


IAT = 1_000  # cutoffs below are relative to the token's iat; None means the forget_at
FIELDS = [
    pytest.param("jti:j1", None, True, id="jti"),
    pytest.param("jti:j2", None, False, id="other-jti"),
    pytest.param("sid:s1", None, True, id="sid"),
    pytest.param("user:alice", 0, True, id="user-cutoff-at-iat"),
    pytest.param("user:alice", -1, False, id="user-cutoff-before-iat"),
    pytest.param("user:bob", 10, False, id="other-user"),
    pytest.param("agent:summarizer", 0, True, id="agent-client"),
    pytest.param("agent:research-agent", 5, True, id="agent-up-the-chain"),
    pytest.param("agent:research-agent", -1, False, id="agent-before-iat"),
    pytest.param("pair:summarizer alice", 0, True, id="pair"),
    pytest.param("pair:research-agent alice", 0, True, id="pair-up-the-chain"),
    pytest.param("pair:summarizer bob", 0, False, id="pair-other-user"),
    pytest.param("pair:alice summarizer", 0, False, id="pair-reversed"),
]


@pytest.mark.parametrize(("field", "cutoff", "revoked"), FIELDS)
async def test_each_field_kind(feeds: FeedFactory, redis_url: str, writer: redis.Redis,
                              prefix: str, field: str, cutoff: int | None,
                              revoked: bool) -> None:
    forget_at = int(time.time()) + 600
    feed = feeds(redis_url, prefix)
    await feed.start()
    revoke(writer, prefix, (field, forget_at if cutoff is None else IAT + cutoff, forget_at),
           ("jti:marker", forget_at, forget_at))
    await eventually(lambda: feed.is_revoked(token(IAT, jti="marker")))
    assert feed.is_revoked(token(IAT)) is revoked


async def test_same_field_twice_keeps_the_larger_cutoff_and_forget_at(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    clock = Clock()
    t = int(clock.now)
    feed = feeds(redis_url, prefix, clock=clock)
    await feed.start()
    revoke(writer, prefix, ("user:alice", t - 100, t + 1000), store=False)
    revoke(writer, prefix, ("user:alice", t - 200, t + 5000), store=False)
    await eventually(lambda: feed.is_revoked(token(t - 150)))
    await asyncio.sleep(0.05)  # no message left in flight
    assert not feed.is_revoked(token(t - 50))  # the cutoff stayed t - 100
    clock.now = t + 2000.0
    assert feed.is_revoked(token(t - 150))  # the forget_at went to t + 5000
    assert feed.entry_count == 1


async def test_entries_past_their_forget_at_are_dropped(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    clock = Clock()
    t = int(clock.now)
    feed = feeds(redis_url, prefix, clock=clock)
    await feed.start()
    revoke(writer, prefix, ("jti:short", t + 10, t + 10), ("jti:long", t + 10**5, t + 10**5))
    await eventually(lambda: feed.entry_count == 2)
    clock.now = t + 11.0
    assert not feed.is_revoked(token(t, jti="short"))  # at once, before any sweep
    clock.now = t + 200.0  # past the end of the short entry's expiry bucket
    await eventually(lambda: feed.entry_count == 1)
    revoke(writer, prefix, ("jti:old", t + 150, t + 150), ("jti:new", t + 10**5, t + 10**5))
    await eventually(lambda: feed.is_revoked(token(t, jti="new")))
    assert feed.entry_count == 2  # the already forgotten one was never kept
    assert feed.is_fresh  # liveness runs on the monotonic clock, not the injected one
    assert feed.is_revoked(token(t, jti="long"))


async def test_fails_closed_before_the_first_sync_when_redis_is_down(
    feeds: FeedFactory
) -> None:
    feed = feeds(f"redis://127.0.0.1:{free_port()}/0", "ab:", staleness_seconds=0.5)
    started = time.monotonic()
    await feed.start()
    assert time.monotonic() - started < 2.0  # bounded, not hung
    assert unavailable(feed, token(1))
    assert not await feed.wait_fresh(0.2)


async def test_fails_closed_past_the_bound_and_resyncs_after_restart(
    feeds: FeedFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The feed logs in as an ACL user that a restarted Redis does not know yet, so the test
    can write to the restarted Redis before the feed gets back in (no race)."""
    caplog.set_level(logging.INFO, logger="mcp_plugin.revocation")
    own = await asyncio.to_thread(start_redis, tmp_path / "redis", appendonly=True)
    admin = redis.Redis.from_url(own.url)

    def let_feed_in() -> None:
        admin.acl_setuser("feed", enabled=True, passwords=["+feed-secret"], keys=["*"],
                          channels=["*"], commands=["+@all"])

    try:
        let_feed_in()
        t = int(time.time())
        feed = feeds(f"redis://feed:feed-secret@127.0.0.1:{own.port}/0", "ab:",
                     staleness_seconds=1.0)
        await feed.start()
        assert feed.is_fresh
        revoke(admin, "ab:", ("jti:unheard", t + 600, t + 600), publish=False)  # a lost message
        killed = time.monotonic()
        await asyncio.to_thread(own.kill)
        await eventually(lambda: unavailable(feed, token(t)), within=3.0)
        assert time.monotonic() - killed < 2.5  # staleness bound plus a ping interval
        await asyncio.to_thread(own.restart)  # AOF brings the hash back, not the ACL user
        revoke(admin, "ab:", ("jti:while-away", t + 600, t + 600))  # the message reaches nobody
        await asyncio.sleep(1.5)  # several reconnection attempts, all refused
        assert unavailable(feed, token(t))
        let_feed_in()
        assert await feed.wait_fresh(5.0)
        assert feed.is_revoked(token(t, jti="unheard"))
        assert feed.is_revoked(token(t, jti="while-away"))
        assert not feed.is_revoked(token(t, jti="other"))
        await feed.aclose()
    finally:
        admin.close()
        await asyncio.to_thread(own.stop)
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    for level, text in [(logging.WARNING, "revocation feed lost Redis"),
                        (logging.ERROR, "revocation feed stale"),
                        (logging.INFO, "revocation feed synced from Redis: 2 entries")]:
        assert any(lv == level and m.startswith(text) for lv, m in logged), text
    assert "feed-secret" not in caplog.text


async def test_a_new_feed_learns_every_current_revocation(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    t = int(time.time())
    first = feeds(redis_url, prefix)
    await first.start()
    entries = [(f"jti:n{i}", t + 600, t + 600) for i in range(300)]
    entries += [("user:alice", t, t + 600), ("agent:research-agent", t, t + 600)]
    for entry in entries:
        revoke(writer, prefix, entry)
    await eventually(lambda: first.entry_count == len(entries))
    second = feeds(redis_url, prefix)
    await second.start()
    assert second.entry_count == len(entries)
    for facts in (token(t, jti="n299", session="x", subject="bob", client_id="a", actors=()),
                  token(t, jti="x", session="x", client_id="a", actors=()),
                  token(t, jti="x", session="x", subject="bob", client_id="a")):
        assert first.is_revoked(facts) and second.is_revoked(facts)


async def test_a_malformed_message_forces_a_resync(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    t = int(time.time())
    feed = feeds(redis_url, prefix)
    await feed.start()
    revoke(writer, prefix, ("jti:j1", t + 600, t + 600), publish=False)
    writer.publish(f"{prefix}revoked", b"{not json")
    await eventually(lambda: feed.is_revoked(token(t)))  # learned from the hash


async def test_pings_keep_an_idle_feed_fresh(
    feeds: FeedFactory, redis_url: str, prefix: str
) -> None:
    feed = feeds(redis_url, prefix, staleness_seconds=0.5)  # pings every 0.125 s
    await feed.start()
    for _ in range(10):
        await asyncio.sleep(0.1)
        assert feed.is_fresh


async def test_aclose_stops_a_feed_that_swallows_a_cancel(
    feeds: FeedFactory, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Python 3.11 redis-py's commands go through asyncio.wait_for, which drops a cancel
    that lands as the write completes; the feed then followed Redis on and aclose hung."""
    pinging = asyncio.Event()
    ping = RedisRevocationFeed._ping

    async def swallowing_ping(self: RedisRevocationFeed, pubsub: Any) -> None:
        pinging.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)
        await ping(self, pubsub)

    monkeypatch.setattr(RedisRevocationFeed, "_ping", swallowing_ping)
    feed = feeds(redis_url, prefix, staleness_seconds=0.5)  # pings every 0.125 s
    await feed.start()
    pinging.clear()
    await asyncio.wait_for(pinging.wait(), 5)
    await asyncio.wait_for(feed.aclose(), 5)
    assert "mcp_plugin.revocation_feed" not in [t.get_name() for t in asyncio.all_tasks()]


async def test_aclose_leaves_nothing_behind(
    redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    name = "mcp_plugin.revocation_feed"  # the task's name, and the connections' CLIENT SETNAME

    def connections() -> int:
        return sum(client["name"] == name for client in writer.client_list())

    before = connections()
    feed = RedisRevocationFeed(redis_url, key_prefix=prefix)
    gc.collect()  # earlier tests' garbage warns now, not in the block below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await asyncio.gather(feed.start(), feed.start())  # idempotent: one task
        assert [task.get_name() for task in asyncio.all_tasks()].count(name) == 1
        assert connections() == before + 2  # the subscription and one for HSCAN
        await feed.aclose()
        await feed.aclose()
        gc.collect()
    assert name not in [task.get_name() for task in asyncio.all_tasks()]
    assert not [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    await eventually(lambda: connections() == before)
    assert unavailable(feed, token(1))
    await feed.start()  # it can be started again
    assert feed.is_fresh
    await feed.aclose()


async def test_a_hundred_thousand_entries_stay_small(
    feeds: FeedFactory, redis_url: str, writer: redis.Redis, prefix: str
) -> None:
    t = int(time.time())
    for chunk in range(10):
        writer.hset(f"{prefix}revoked", mapping={
            f"jti:{uuid.uuid4().hex}": json.dumps({"c": t + 900 + i, "f": t + 900 + i, "r": "r"})
            for i in range(chunk * 10_000, (chunk + 1) * 10_000)})
    feed = feeds(redis_url, prefix)
    tracemalloc.start()
    try:
        await feed.start()
        assert await feed.wait_fresh(10.0)
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert feed.entry_count == 100_000
    assert held < 30 * 2**20, f"{held / 2**20:.1f} MiB for 100k entries"  # about 21 MiB
