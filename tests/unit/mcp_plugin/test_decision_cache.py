"""The decision cache: the exact same question within `ttl` is not asked again; anything
else is (another argument, scope, session, tool), and failures are never remembered."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pytest
from fastmcp import Client

from agent_broker_demo.crm_server import build_protected_server
from mcp_plugin import CheckItem, Decision, Principal
from mcp_plugin.decision_cache import CachingPolicyPoint, DecisionCache, ExpiringCache
from mcp_plugin.principal import ResourceRef
from mcp_plugin.testing import Endpoint, FakeBroker
from tests.unit.mcp_plugin.conftest import Monotonic

ALICE = Principal("alice", ("user",), {"scopes": ["crm:read"], "agent": "a", "actors": ["a"],
                                      "session": "s1", "depth": 1})


def item(name: str = "search", **arguments: object) -> CheckItem:
    attr = {"tags": ["scope:crm:read"], "arguments": arguments}
    return CheckItem(ResourceRef("mcp_server", name, attr), f"tools/call::{name}")


class CountingPDP:
    """Allows what `allowed` names; fails (as an unreachable PDP does) while `down`."""

    def __init__(self) -> None:
        self.asked: list[list[CheckItem]] = []
        self.allowed = {"search"}
        self.down = False

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        self.asked.append(list(items))
        if self.down:
            return [Decision(i, False, failure="PDP unavailable: test") for i in items]
        return [Decision(i, i.resource.id in self.allowed, request_id="r1") for i in items]


@pytest.fixture
def pdp() -> CountingPDP:
    return CountingPDP()


@pytest.fixture
def cached(pdp: CountingPDP, monotonic: Monotonic) -> CachingPolicyPoint:
    return CachingPolicyPoint(pdp, DecisionCache(1.0, max_entries=100, clock=monotonic))


async def test_the_same_question_within_the_ttl_is_answered_from_the_cache(
    pdp: CountingPDP, cached: CachingPolicyPoint, monotonic: Monotonic
) -> None:
    first = await cached.check(ALICE, [item(query="a")])
    monotonic.now += 0.9
    again = await cached.check(ALICE, [item(query="a")])
    assert len(pdp.asked) == 1
    assert first[0].allowed and again[0].allowed
    assert not first[0].cached and again[0].cached
    assert again[0].request_id == "r1"  # the log points at the answer it reuses


async def test_after_the_ttl_cerbos_is_asked_again(
    pdp: CountingPDP, cached: CachingPolicyPoint, monotonic: Monotonic
) -> None:
    await cached.check(ALICE, [item(query="a")])
    pdp.allowed = set()  # a policy edit
    monotonic.now += 1.0
    assert not (await cached.check(ALICE, [item(query="a")]))[0].allowed
    assert len(pdp.asked) == 2


@pytest.mark.parametrize("other", [
    pytest.param((ALICE, item(query="b")), id="another argument value"),
    pytest.param((ALICE, item(query="a", limit=1)), id="one more argument"),
    pytest.param((ALICE, item("export", query="a")), id="another tool"),
    pytest.param((Principal("bob", ALICE.roles, ALICE.attr), item(query="a")),
                 id="another user"),
    pytest.param((Principal("alice", ("user", "admin"), ALICE.attr), item(query="a")),
                 id="another role"),
    pytest.param((Principal("alice", ALICE.roles, {**ALICE.attr, "scopes": []}),
                  item(query="a")), id="fewer scopes"),
    pytest.param((Principal("alice", ALICE.roles, {**ALICE.attr, "session": "s2"}),
                  item(query="a")), id="another session"),
    pytest.param((Principal("alice", ALICE.roles, {**ALICE.attr, "actors": ["b", "a"]}),
                  item(query="a")), id="another agent chain"),
    pytest.param((ALICE, CheckItem(ResourceRef("other_kind", "search",
                                               item(query="a").resource.attr),
                                   "tools/call::search")), id="another resource kind"),
])
async def test_any_other_question_is_asked(
    pdp: CountingPDP, cached: CachingPolicyPoint, other: tuple[Principal, CheckItem]
) -> None:
    await cached.check(ALICE, [item(query="a")])
    principal, question = other
    decisions = await cached.check(principal, [question])
    assert len(pdp.asked) == 2
    assert not decisions[0].cached


async def test_a_failure_is_never_remembered(
    pdp: CountingPDP, cached: CachingPolicyPoint
) -> None:
    pdp.down = True
    assert not (await cached.check(ALICE, [item(query="a")]))[0].allowed
    pdp.down = False
    assert (await cached.check(ALICE, [item(query="a")]))[0].allowed
    assert len(pdp.asked) == 2


async def test_a_failure_forgets_every_answer(
    pdp: CountingPDP, cached: CachingPolicyPoint
) -> None:
    """Once Cerbos is seen failing, even questions it answered a moment ago are denied."""
    assert (await cached.check(ALICE, [item(query="a")]))[0].allowed
    pdp.down = True
    assert not (await cached.check(ALICE, [item(query="b")]))[0].allowed
    assert not (await cached.check(ALICE, [item(query="a")]))[0].allowed
    assert len(pdp.asked) == 3


async def test_a_denial_is_remembered_like_an_allow(
    pdp: CountingPDP, cached: CachingPolicyPoint
) -> None:
    for _ in range(2):
        assert not (await cached.check(ALICE, [item("export")]))[0].allowed
    assert len(pdp.asked) == 1


async def test_a_list_asks_only_what_is_unknown_in_one_question(
    pdp: CountingPDP, cached: CachingPolicyPoint
) -> None:
    await cached.check(ALICE, [item("search"), item("export")])
    decisions = await cached.check(ALICE, [item("delete"), item("search"), item("export"),
                                           item("update")])
    assert [[i.resource.id for i in asked] for asked in pdp.asked] == [
        ["search", "export"], ["delete", "update"]]
    assert [(d.item.resource.id, d.allowed, d.cached) for d in decisions] == [
        ("delete", False, False), ("search", True, True), ("export", False, True),
        ("update", False, False)]


async def test_values_json_cannot_spell_exactly_are_always_asked(
    pdp: CountingPDP, cached: CachingPolicyPoint
) -> None:
    for _ in range(2):
        await cached.check(ALICE, [item(query=object())])
        await cached.check(ALICE, [item(query=float("nan"))])
    assert len(pdp.asked) == 4


def test_the_cache_is_bounded_oldest_first(monotonic: Monotonic) -> None:
    cache = ExpiringCache[int](10, max_entries=2, clock=monotonic)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # put again: now the newest
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (3, None, 4, 2)


def test_expired_entries_go_as_new_ones_come_in(monotonic: Monotonic) -> None:
    """Keys never asked again must not pile up until `max_entries`: memory follows the rate
    of new questions times the ttl (the mixed load run's flat-memory figure)."""
    cache = ExpiringCache[int](1.0, max_entries=1_000_000, clock=monotonic)
    for n in range(10_000):
        monotonic.now += 0.01  # 100 new keys a second, each seen once
        cache.put(n, n)
    assert len(cache) <= 101


def test_ttl_zero_keeps_nothing(monotonic: Monotonic) -> None:
    cache = ExpiringCache[int](0, clock=monotonic)
    cache.put("a", 1)
    assert cache.get("a") is None


# -- through a served, protected CRM ---------------------------------------------------------


class ScriptedPDP(CountingPDP):
    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        self.asked.append(list(items))
        return [Decision(i, "crm:read" in principal.attr["scopes"]
                         and i.resource.id == "search_contacts", request_id="r")
                for i in items]


async def test_repeated_calls_ask_cerbos_once_and_the_log_says_so(
    caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = Endpoint()
    broker = FakeBroker(audience=endpoint.url)
    pdp = ScriptedPDP()
    mcp = build_protected_server(broker=broker.issuer, resource=endpoint.url, cerbos=pdp,
                                 redis_url=None, http_client=broker.http_client(),
                                 decision_cache_seconds=60)
    token = broker.tokens.mint(scopes=["crm:read"])
    try:
        with endpoint.serve(mcp.http_app(path=endpoint.path)), \
                caplog.at_level(logging.INFO, logger="mcp_plugin.decisions"):
            async with Client(endpoint.url, auth=token) as client:
                for query in ("ada", "ada", "grace"):
                    await client.call_tool("search_contacts", {"query": query})
    finally:
        endpoint.close()
    calls = [[i.resource.attr["arguments"] for i in items if i.action.startswith("tools/call")]
             for items in pdp.asked]
    assert [c for c in calls if c] == [[{"query": "ada"}], [{"query": "grace"}]]
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "mcp_plugin.decisions" and "tools/call::" in r.getMessage()]
    assert [line.get("cached", False) for line in lines] == [False, True, False]
