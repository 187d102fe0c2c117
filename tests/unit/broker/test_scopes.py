"""The scope algebra: tables for the rules, hypothesis for the properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import scopes
from broker.errors import InvalidScope

CATALOG = frozenset({"crm:read", "crm:write", "crm:delete", "docs:read", "email:send"})


@pytest.mark.parametrize(
    ("requested", "declared", "parent", "granted", "dropped"),
    [
        pytest.param(None, ["crm:read"], None, {"crm:read"}, [],
                     id="nothing-requested-gives-declared"),
        pytest.param(None, ["crm:*"], None, {"crm:read", "crm:write", "crm:delete"}, [],
                     id="declared-wildcard-expands-against-catalog"),
        pytest.param(["crm:read", "crm:write"], ["crm:read"], None, {"crm:read"},
                     [("crm:write", scopes.NOT_DECLARED)], id="undeclared-dropped"),
        pytest.param(["crm:read", "billing:pay"], ["crm:*", "billing:*"], None, {"crm:read"},
                     [("billing:pay", scopes.NOT_IN_CATALOG)], id="not-in-catalog-dropped-first"),
        pytest.param(["crm:*"], ["crm:read"], None, {"crm:read"},
                     [("crm:delete", scopes.NOT_DECLARED), ("crm:write", scopes.NOT_DECLARED)],
                     id="requested-wildcard-expands-then-filters"),
        pytest.param(["nothing:*"], ["crm:*"], None, set(),
                     [("nothing:*", scopes.NOT_IN_CATALOG)], id="unmatched-wildcard-reported"),
        pytest.param(["crm:read", "crm:write"], ["crm:*"], {"crm:read"}, {"crm:read"},
                     [("crm:write", scopes.NOT_IN_PARENT)], id="parent-narrows"),
    ],
)
def test_narrow(requested, declared, parent, granted, dropped) -> None:
    decision = scopes.narrow(requested=requested, declared=declared, catalog=CATALOG,
                             parent=parent)
    assert decision.granted == granted
    assert [(d.scope, d.reason) for d in decision.dropped] == dropped


def test_user_rights_are_the_last_filter() -> None:
    decision = scopes.narrow(requested=None, declared=["crm:*"], catalog=CATALOG)
    final = decision.drop_unless({"crm:read"}, scopes.NOT_DELEGABLE)
    assert final.granted == {"crm:read"}
    assert {(d.scope, d.reason) for d in final.dropped} == {
        ("crm:write", scopes.NOT_DELEGABLE), ("crm:delete", scopes.NOT_DELEGABLE)}


@pytest.mark.parametrize(
    "value",
    ["crm:read\tcrm:write", 'crm"read', "crm\\read", "é", "*", "crm:*:x*", "x" * 129],
    ids=["tab", "quote", "backslash", "non-ascii", "bare-star", "inner-star", "too-long"],
)
def test_malformed_scope_parameter_is_invalid_scope(value: str) -> None:
    with pytest.raises(InvalidScope):
        scopes.parse_scope_param(value)


def test_scope_parameter_parsing() -> None:
    assert scopes.parse_scope_param(None) is None
    assert scopes.parse_scope_param("   ") is None
    assert scopes.parse_scope_param("crm:read  crm:read docs:*") == ("crm:read", "docs:*")
    with pytest.raises(InvalidScope):
        scopes.parse_scope_param(" ".join(f"s{i}" for i in range(scopes.MAX_SCOPES + 1)))


# -- properties ---------------------------------------------------------------------------

names = st.sampled_from(["crm", "docs", "email", "billing"])
verbs = st.sampled_from(["read", "write", "delete", "send", "*"])
scope_st = st.builds(lambda n, v: f"{n}:{v}", names, verbs)
scope_sets = st.lists(scope_st, max_size=8)
catalogs = st.frozensets(scope_st.filter(lambda s: not s.endswith("*")), max_size=10)


@given(requested=scope_sets, declared=scope_sets, catalog=catalogs, parent=scope_sets,
       rights=scope_sets)
def test_granted_is_a_subset_of_every_input(requested, declared, catalog, parent, rights) -> None:
    decision = scopes.narrow(requested=requested, declared=declared, catalog=catalog,
                             parent=frozenset(parent))
    decision = decision.drop_unless(frozenset(rights), scopes.NOT_DELEGABLE)
    assert decision.granted <= catalog
    assert decision.granted <= scopes.expand(declared, catalog)
    assert decision.granted <= scopes.expand(requested, catalog)
    assert decision.granted <= frozenset(parent)
    assert decision.granted <= frozenset(rights)
    assert not any(scopes.is_wildcard(s) for s in decision.granted)


@given(requested=scope_sets, declared=scope_sets, catalog=catalogs, data=st.data())
def test_order_does_not_matter(requested, declared, catalog, data) -> None:
    first = scopes.narrow(requested=requested, declared=declared, catalog=catalog)
    again = scopes.narrow(requested=data.draw(st.permutations(requested)),
                          declared=data.draw(st.permutations(declared)), catalog=catalog)
    assert first.granted == again.granted
    assert sorted(first.dropped, key=str) == sorted(again.dropped, key=str)


@given(requested=scope_sets, declared=scope_sets, catalog=catalogs, child_requested=scope_sets,
       child_declared=scope_sets)
def test_redelegation_never_widens(requested, declared, catalog, child_requested,
                                   child_declared) -> None:
    parent = scopes.narrow(requested=requested, declared=declared, catalog=catalog).granted
    child = scopes.narrow(requested=child_requested, declared=child_declared, catalog=catalog,
                          parent=parent).granted
    assert child <= parent


@given(requested=scope_sets, declared=scope_sets, catalog=catalogs)
def test_every_candidate_is_granted_or_dropped_once(requested, declared, catalog) -> None:
    decision = scopes.narrow(requested=requested, declared=declared, catalog=catalog)
    dropped = [d.scope for d in decision.dropped]
    assert len(dropped) == len(set(dropped))
    assert not decision.granted & set(dropped)
    assert decision.granted | set(dropped) == scopes.expand_requested(requested, catalog)
