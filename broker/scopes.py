"""Scope algebra: parse, expand `ns:*` wildcards, intersect, and explain every drop.

A granted scope must survive every filter, in this order, and the first filter that removes
a scope names the reason recorded in the session:

1. the resource's catalog        (`not_in_resource_catalog`)
2. the agent's declared scopes   (`not_declared_by_agent`)
3. the parent token's scope      (`not_in_parent_token`, re-delegation only)
4. the user's delegable rights   (`not_delegable_by_user`, decided by Cerbos)

Wildcards (`crm:*`) may appear in declared and requested scopes and are expanded against the
resource's catalog, never granted as such. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from broker.errors import InvalidScope
from broker.sessions import DroppedScope

NOT_IN_CATALOG = "not_in_resource_catalog"
NOT_DECLARED = "not_declared_by_agent"
NOT_IN_PARENT = "not_in_parent_token"
NOT_DELEGABLE = "not_delegable_by_user"

MAX_SCOPES = 64
MAX_SCOPE_LENGTH = 128
# RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E; `*` only as a trailing `ns:*` wildcard.
_TOKEN = re.compile(r"^[\x21\x23-\x29\x2b-\x5b\x5d-\x7e]+$")
_WILDCARD = re.compile(r"^[\x21\x23-\x29\x2b-\x5b\x5d-\x7e]+:\*$")


def is_wildcard(scope: str) -> bool:
    return scope.endswith(":*")


def check_scope_syntax(scope: str, *, allow_wildcard: bool) -> str:
    """Raise ValueError unless `scope` is a valid scope token (or an allowed `ns:*`)."""
    if not scope or len(scope) > MAX_SCOPE_LENGTH:
        raise ValueError(f"scope must be 1 to {MAX_SCOPE_LENGTH} characters")
    if _TOKEN.match(scope):
        return scope
    if allow_wildcard and _WILDCARD.match(scope):
        return scope
    raise ValueError(f"{scope!r} is not a valid scope" + (" or `ns:*`" if allow_wildcard else ""))


def parse_scope_param(value: str | None) -> tuple[str, ...] | None:
    """Parse the space-delimited `scope` parameter; None when absent or empty."""
    if value is None or not value.strip(" "):
        return None
    items = [s for s in value.split(" ") if s]
    if len(items) > MAX_SCOPES:
        raise InvalidScope(f"At most {MAX_SCOPES} scopes may be requested.")
    for item in items:
        try:
            check_scope_syntax(item, allow_wildcard=True)
        except ValueError:
            raise InvalidScope("The scope parameter is malformed.") from None
    return tuple(dict.fromkeys(items))


def format_scope(scopes: Iterable[str]) -> str:
    return " ".join(sorted(scopes))


def expand(patterns: Iterable[str], catalog: Collection[str]) -> frozenset[str]:
    """Expand `ns:*` against `catalog`; plain scopes pass through unchanged."""
    out: set[str] = set()
    for pattern in patterns:
        if is_wildcard(pattern):
            prefix = pattern[:-1]
            out.update(s for s in catalog if s.startswith(prefix))
        else:
            out.add(pattern)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ScopeDecision:
    granted: frozenset[str]
    dropped: tuple[DroppedScope, ...]

    def drop_unless(self, allowed: Collection[str], reason: str) -> ScopeDecision:
        kept = frozenset(s for s in self.granted if s in allowed)
        newly = tuple(DroppedScope(s, reason) for s in sorted(self.granted - kept))
        return ScopeDecision(kept, self.dropped + newly)


def narrow(
    *,
    requested: Iterable[str] | None,
    declared: Iterable[str],
    catalog: Collection[str],
    parent: Collection[str] | None = None,
) -> ScopeDecision:
    """Apply filters 1-3; the caller asks the PDP about `granted` and applies filter 4.

    With nothing requested the agent asks for everything it declared (contract §4).
    """
    declared_set = expand(declared, catalog)
    wanted = declared_set if requested is None else expand_requested(requested, catalog)
    decision = ScopeDecision(frozenset(wanted), ())
    decision = decision.drop_unless(catalog, NOT_IN_CATALOG)
    decision = decision.drop_unless(declared_set, NOT_DECLARED)
    if parent is not None:
        decision = decision.drop_unless(parent, NOT_IN_PARENT)
    return decision


def expand_requested(requested: Iterable[str], catalog: Collection[str]) -> frozenset[str]:
    """Requested wildcards expand like declared ones; one that matches nothing is kept so it
    is reported as dropped (`not_in_resource_catalog`) rather than silently vanishing."""
    out: set[str] = set()
    for scope in requested:
        matched = expand([scope], catalog)
        out.update(matched if matched else {scope})
    return frozenset(out)
