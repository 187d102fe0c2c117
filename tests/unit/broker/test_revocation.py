"""The pure revocation model: targets, entries, and which tokens an entry covers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.revocation import (
    Entry,
    RevocationTarget,
    TargetKind,
    TokenFacts,
    check_revoked,
    fields_for,
    plan_revocation,
)

NOW = 1_800_000_000
FACTS = TokenFacts(subject="alice", actors=("research-agent", "summarizer-agent"),
                   issued_at=NOW - 10, jti="j1", sid="s1")


def plan(target: RevocationTarget, **kw: int):  # type: ignore[no-untyped-def]
    args = {"now": NOW, "token_ttl": 300, "retention": 86_400, "leeway": 30, **kw}
    return plan_revocation(target, revoked_by="root", reason="  why  ", **args)


@pytest.mark.parametrize(("given", "kind"), [
    ({"token": "j"}, TargetKind.TOKEN),
    ({"session": "s"}, TargetKind.SESSION),
    ({"user": "u"}, TargetKind.USER),
    ({"agent": "a"}, TargetKind.AGENT),
    ({"user": "u", "agent": "a"}, TargetKind.USER_AGENT),
], ids=lambda v: str(v))
def test_a_target_names_exactly_one_grain(given: dict[str, str], kind: TargetKind) -> None:
    assert RevocationTarget.build(**given).kind is kind


@pytest.mark.parametrize("given", [
    {}, {"user": ""}, {"token": "j", "session": "s"}, {"user": "u", "session": "s"},
    {"agent": "a", "token": "t"}, {"user": "u", "agent": "a", "token": "t"},
], ids=str)
def test_anything_else_is_refused(given: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="name one token"):
        RevocationTarget.build(**given)


def test_fields_cover_user_token_session_and_every_agent_and_pair_of_the_chain() -> None:
    assert fields_for(FACTS) == [
        "user:alice", "jti:j1", "sid:s1",
        "agent:research-agent", "pair:research-agent alice",
        "agent:summarizer-agent", "pair:summarizer-agent alice",
    ]
    assert fields_for(TokenFacts("bob", ("a", "a"), 0)) == ["user:bob", "agent:a", "pair:a bob"]


@pytest.mark.parametrize(("target", "field", "cutoff", "forget_at"), [
    (RevocationTarget(TargetKind.TOKEN, jti="j1"), "jti:j1", NOW + 330, NOW + 330),
    (RevocationTarget(TargetKind.SESSION, sid="s1"), "sid:s1", NOW + 330, NOW + 330),
    (RevocationTarget(TargetKind.USER, subject="alice"), "user:alice", NOW, NOW + 86_430),
    (RevocationTarget(TargetKind.AGENT, agent="a"), "agent:a", NOW, NOW + 86_430),
    (RevocationTarget(TargetKind.USER_AGENT, subject="alice", agent="a"), "pair:a alice",
     NOW, NOW + 86_430),
], ids=lambda v: getattr(v, "kind", None) or "")
def test_plans_write_one_entry_with_cutoff_and_forget_time(
        target: RevocationTarget, field: str, cutoff: int, forget_at: int) -> None:
    result = plan(target)
    assert [(e.field, e.cutoff, e.forget_at) for e in result.entries] == [
        (field, cutoff, forget_at)]
    assert result.revocation.reason == "why"
    assert result.revocation.revoked_at == NOW
    assert result.entries[0].revocation_id == result.revocation.id
    assert result.cascade_from == ((target.sid,) if target.sid else ())


def test_a_known_expiry_bounds_a_token_entry() -> None:
    result = plan(RevocationTarget(TargetKind.SESSION, sid="s1"), expires_at=NOW + 60)
    assert result.entries[0].forget_at == NOW + 90


def test_user_cutoffs_cover_tokens_issued_until_the_revocation_second_only() -> None:
    cutoffs = {e.field: e.cutoff
               for e in plan(RevocationTarget(TargetKind.USER, subject="alice")).entries}
    assert check_revoked(TokenFacts("alice", ("x",), NOW), cutoffs) == "user:alice"
    assert check_revoked(TokenFacts("alice", ("x",), NOW + 1), cutoffs) is None
    assert check_revoked(TokenFacts("bob", ("x",), NOW), cutoffs) is None


def test_an_agent_anywhere_in_the_chain_is_covered() -> None:
    cutoffs = {"agent:research-agent": NOW}
    assert check_revoked(FACTS, cutoffs) == "agent:research-agent"
    assert check_revoked(TokenFacts("alice", ("other",), NOW - 10), cutoffs) is None


def test_a_token_with_a_known_session_revokes_the_session_and_its_descendants() -> None:
    result = plan(RevocationTarget(TargetKind.TOKEN, jti="j1"), expires_at=NOW + 60,
                  token_session="s1")
    assert [(e.field, e.cutoff) for e in result.entries] == [("jti:j1", NOW + 90),
                                                             ("sid:s1", NOW + 90)]
    assert result.cascade_from == ("s1",)


def test_entries_round_trip_through_the_wire_format() -> None:
    entry = Entry("pair:a b c", 1, 2, "rev_x")
    assert entry.to_wire() == '{"c":1,"f":2,"r":"rev_x"}'
    assert Entry.from_wire("pair:a b c", entry.to_wire()) == entry


@given(st.dictionaries(st.sampled_from([*fields_for(FACTS), "user:bob", "agent:z"]),
                       st.integers(NOW - 100, NOW + 100)))
def test_revoked_exactly_when_a_matching_cutoff_reaches_the_issue_time(
        cutoffs: dict[str, int]) -> None:
    expected = any(cutoffs.get(f, -1) >= FACTS.issued_at for f in fields_for(FACTS))
    assert (check_revoked(FACTS, cutoffs) is not None) == expected
