"""A short-lived cache of Cerbos decisions, in front of any `PolicyDecisionPoint`.

Why: a Cerbos round trip is most of what mcp_plugin adds to a `tools/call` (issue 3's goal
is a p50 within 1.25x of an unprotected server; one gRPC round trip alone costs more than
that margin), and an agent repeats the same questions: the same token asks about the same
tools, often with the same arguments, many times a second.

What is cached: Cerbos's own answers, allow and deny, keyed by the EXACT question: the
principal (id, roles, every attribute: scopes, agent chain, session...) and the item
(resource kind, id, action, every attribute: tags, annotations, arguments). A different
argument value, scope or session is a different question. Failures (PDP unreachable, slow,
an unreadable answer) are never cached, and the first failure empties the cache: once the
plugin has seen Cerbos fail, nothing is allowed until Cerbos answers again.
A question that cannot be written canonically (a value JSON cannot represent) is not cached.

What this means, and why it is safe enough to be on by default:
- A policy edit reaches a question already answered within `ttl` seconds (default 1 s)
  after Cerbos loads it. Cerbos's own file watcher also applies edits after a short delay,
  so policies keep changing without a redeploy, on the same time scale.
- Revocation, expiry and every token check are NOT decisions: the verifier applies them to
  every request before any decision is looked up, so the kill switch stays immediate.
- Memory is bounded (`max_entries`, oldest dropped first) and expired answers are dropped as
  new ones come in.
`ttl=0` turns caching off (`protect(..., decision_cache_seconds=0)`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

from mcp_plugin.pdp import Decision, PolicyDecisionPoint
from mcp_plugin.principal import CheckItem, Principal, canonical_json

V = TypeVar("V")

DEFAULT_TTL_SECONDS = 1.0
DEFAULT_MAX_ENTRIES = 10_000
"""A question is a few hundred bytes: about 5 MB at most."""


def item_key(item: CheckItem) -> Hashable | None:
    attr = canonical_json(item.resource.attr)
    if attr is None:
        return None
    return (item.resource.kind, item.resource.id, item.action, attr)


class ExpiringCache(Generic[V]):
    """Values by key, each kept `ttl` seconds from when it was put, at most `max_entries`
    (oldest dropped first). `ttl=0` keeps nothing.

    Entries stay in the order they were put, which is also the order they expire in (one
    `ttl` for all), so each `put` drops the expired head first: memory follows the recent
    rate of new keys times `ttl`, not the history of every key ever seen."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, *,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must be >= 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return value

    def clear(self) -> None:
        self._entries.clear()

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl == 0:
            return
        now = self._clock()
        while self._entries and next(iter(self._entries.values()))[0] <= now:
            self._entries.popitem(last=False)
        self._entries.pop(key, None)  # a refreshed key moves to the back, in expiry order
        self._entries[key] = (now + self.ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


DecisionCache = ExpiringCache[Decision]


class CachingPolicyPoint:
    """A `PolicyDecisionPoint` that asks `pdp` only the questions `cache` cannot answer,
    in one call. Decisions from the cache carry `cached=True` for the decision log."""

    def __init__(self, pdp: PolicyDecisionPoint, cache: DecisionCache) -> None:
        self.pdp = pdp
        self.cache = cache

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        who = principal.canonical
        if who is None:
            return await self.pdp.check(principal, items)
        keys = [(who, k) if (k := item_key(item)) is not None else None for item in items]
        decisions: list[Decision | None] = [
            self._cached(key, item) if key is not None else None
            for key, item in zip(keys, items, strict=True)
        ]
        missing = [n for n, decision in enumerate(decisions) if decision is None]
        if missing:
            answers = await self.pdp.check(principal, [items[n] for n in missing])
            if any(answer.failure is not None for answer in answers):
                self.cache.clear()  # the PDP is failing: stop answering for it, right away
            for n, answer in zip(missing, answers, strict=True):
                decisions[n] = answer
                if (key := keys[n]) is not None and answer.failure is None:
                    self.cache.put(key, answer)
        return [d for d in decisions if d is not None]

    def _cached(self, key: Hashable, item: CheckItem) -> Decision | None:
        """The remembered answer, about this very item: equal keys mean Cerbos sees the same
        question (a list and a tuple spell one JSON array, one protobuf list)."""
        decision = self.cache.get(key)
        return None if decision is None else replace(decision, item=item, cached=True)
