"""StaticRevocations, the in-memory reference RevocationView."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcp_plugin import RevocationView, StaticRevocations, TokenFacts

TOKEN = TokenFacts(
    jti="j1", session="s1", subject="alice", client_id="summarizer",
    actors=("summarizer", "research-agent"), issued_at=100,
)


@pytest.mark.parametrize(
    ("revoke", "revoked"),
    [
        pytest.param(lambda r: None, False, id="nothing"),
        pytest.param(lambda r: r.revoke_token("j1"), True, id="jti"),
        pytest.param(lambda r: r.revoke_token("j2"), False, id="other-jti"),
        pytest.param(lambda r: r.revoke_sessions(["s0", "s1"]), True, id="session"),
        pytest.param(lambda r: r.revoke_user("alice", issued_before=100), True, id="user"),
        pytest.param(lambda r: r.revoke_user("alice", issued_before=99), False,
                     id="user-before-issue"),
        pytest.param(lambda r: r.revoke_user("bob", issued_before=200), False, id="other-user"),
        pytest.param(lambda r: r.revoke_agent("summarizer", issued_before=150), True,
                     id="agent"),
        pytest.param(lambda r: r.revoke_agent("research-agent", issued_before=150), True,
                     id="agent-up-the-chain"),
        pytest.param(lambda r: r.revoke_user_agent("alice", "summarizer", issued_before=100),
                     True, id="user-agent"),
        pytest.param(lambda r: r.revoke_user_agent("bob", "summarizer", issued_before=100),
                     False, id="other-user-agent"),
    ],
)
def test_static_revocations(revoke: Callable[[StaticRevocations], None], revoked: bool) -> None:
    view = StaticRevocations()
    revoke(view)
    assert view.is_revoked(TOKEN) is revoked


def test_later_revocation_time_wins_and_clear_forgets() -> None:
    view = StaticRevocations()
    view.revoke_user("alice", issued_before=150)
    view.revoke_user("alice", issued_before=50)
    assert view.is_revoked(TOKEN)
    view.clear()
    assert not view.is_revoked(TOKEN)


def test_is_a_revocation_view() -> None:
    assert isinstance(StaticRevocations(), RevocationView)
