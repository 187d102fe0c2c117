"""The admin API: who may see and revoke what (Cerbos, broker_admin), and the audit trail."""

from __future__ import annotations

import time

import pytest

from tests.integration.revocation_support import RevocationStack, stack_fixture

stack = stack_fixture("module")


@pytest.fixture(scope="module")
def admin(stack: RevocationStack) -> str:
    return stack.admin_token("root", ("admin",))


def own_token(stack: RevocationStack, sub: str, roles: tuple[str, ...] = ("sales_rep",)) -> str:
    return stack.admin_token(sub, roles)


@pytest.mark.parametrize(("headers", "why"), [
    ({}, "no token"),
    ({"Authorization": "Bearer"}, "empty bearer"),
    ({"Authorization": "Basic cm9vdDpyb290"}, "not a bearer token"),
    ({"Authorization": "Bearer not.a.jwt"}, "garbage"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_requests_without_a_valid_admin_token_get_401_with_a_bearer_challenge(
        stack: RevocationStack, headers: dict[str, str], why: str) -> None:
    with stack.http() as http:
        response = http.get("/admin/sessions", headers=headers)
    assert response.status_code == 401, why
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_a_user_token_for_the_agent_host_audience_is_not_an_admin_token(
        stack: RevocationStack) -> None:
    _, agent_host_token = stack.login(roles=["admin"])  # aud agent-host, not broker-admin
    response = stack.admin("GET", "/admin/sessions", agent_host_token)
    assert response.status_code == 401


def test_an_agent_token_of_this_broker_is_not_an_admin_token(stack: RevocationStack) -> None:
    _, id_token = stack.login(roles=["sales_rep", "admin"])
    minted = stack.mint(id_token)
    assert stack.admin("GET", "/admin/sessions", minted.token).status_code == 401


def test_admin_lists_filters_reads_and_revokes_sessions(stack: RevocationStack,
                                                        admin: str) -> None:
    user, id_token = stack.login()
    root = stack.mint(id_token, scope="crm:read crm:delete")
    child = stack.delegate(root)

    listed = stack.admin("GET", f"/admin/sessions?user={user}", admin)
    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"] == "no-store"
    sessions = {s["sid"]: s for s in listed.json()["sessions"]}
    assert set(sessions) == {root.sid, child.sid}
    assert sessions[child.sid]["actors"] == ["research-agent", "summarizer-agent"]
    assert sessions[child.sid]["parent_sid"] == root.sid
    assert sessions[root.sid]["scopes"] == ["crm:read"]
    assert sessions[root.sid]["dropped"] == [{"scope": "crm:delete",
                                              "reason": "not_delegable_by_user"}]
    assert all(s["status"] == "active" for s in sessions.values())

    by_agent = stack.admin("GET", "/admin/sessions?agent=summarizer-agent", admin).json()
    assert child.sid in {s["sid"] for s in by_agent["sessions"]}
    assert root.sid not in {s["sid"] for s in by_agent["sessions"]}

    detail = stack.admin("GET", f"/admin/sessions/{root.sid}", admin).json()
    assert detail["children"] == [child.sid]

    revoked = stack.admin("POST", f"/admin/sessions/{root.sid}/revoke", admin,
                          json={"reason": "suspicious export"})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_by"] == "root"
    assert revoked.json()["reason"] == "suspicious export"
    after = {s["sid"]: s for s in stack.admin("GET", f"/admin/sessions?user={user}",
                                              admin).json()["sessions"]}
    assert after[root.sid]["status"] == after[child.sid]["status"] == "revoked"
    assert after[child.sid]["revoked_by"] == f"sid:{child.sid}"
    assert stack.admin("GET", "/admin/sessions/no-such-sid", admin).status_code == 404


def test_pagination_walks_every_session_once(stack: RevocationStack, admin: str) -> None:
    user, id_token = stack.login()
    sids = {stack.mint(id_token).sid for _ in range(5)}
    seen: list[str] = []
    cursor: int | None = 0
    while cursor is not None:
        page = stack.admin("GET", f"/admin/sessions?user={user}&limit=2&cursor={cursor}",
                           admin).json()
        seen += [s["sid"] for s in page["sessions"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(sids)


def test_a_user_sees_and_revokes_only_their_own_sessions(stack: RevocationStack,
                                                        admin: str) -> None:
    alice, alice_login = stack.login()
    bob, bob_login = stack.login()
    alices, bobs = stack.mint(alice_login), stack.mint(bob_login)
    alice_admin_token = own_token(stack, alice)

    mine = stack.admin("GET", f"/admin/sessions?user={alice}", alice_admin_token)
    assert [s["sid"] for s in mine.json()["sessions"]] == [alices.sid]
    assert stack.admin("GET", f"/admin/sessions?user={bob}", alice_admin_token
                       ).status_code == 403
    assert stack.admin("GET", "/admin/sessions", alice_admin_token).status_code == 403
    # another user's session is indistinguishable from a missing one
    assert stack.admin("GET", f"/admin/sessions/{bobs.sid}", alice_admin_token
                       ).status_code == 404
    assert stack.admin("POST", f"/admin/sessions/{bobs.sid}/revoke", alice_admin_token
                       ).status_code == 404
    assert stack.is_active(bobs.token)
    assert stack.admin("GET", "/admin/agents", alice_admin_token).status_code == 403
    assert stack.admin("POST", "/admin/revocations", alice_admin_token,
                       json={"agent": "research-agent"}).status_code == 403

    ok = stack.admin("POST", f"/admin/sessions/{alices.sid}/revoke", alice_admin_token)
    assert ok.status_code == 200
    assert not stack.is_active(alices.token)
    cut_off = stack.admin("POST", "/admin/revocations", alice_admin_token,
                          json={"user": alice, "agent": "summarizer-agent"})
    assert cut_off.status_code == 201, cut_off.text


def test_an_auditor_reads_everything_and_revokes_nothing_of_others(
        stack: RevocationStack) -> None:
    user, id_token = stack.login()
    minted = stack.mint(id_token)
    auditor = stack.admin_token("auditor-1", ("auditor",))
    assert stack.admin("GET", "/admin/sessions", auditor).status_code == 200
    assert stack.admin("GET", f"/admin/sessions/{minted.sid}", auditor).status_code == 200
    assert stack.admin("GET", "/admin/agents", auditor).status_code == 200
    assert stack.admin("GET", "/admin/revocations", auditor).status_code == 200
    assert stack.admin("POST", f"/admin/sessions/{minted.sid}/revoke", auditor
                       ).status_code == 403
    assert stack.admin("POST", "/admin/revocations", auditor,
                       json={"user": user}).status_code == 403
    assert stack.is_active(minted.token)


@pytest.mark.parametrize("body", [
    {}, {"user": "u", "session": "s"}, {"agent": "a", "token": "t"}, {"user": ""},
    {"user": "u", "extra": 1}, {"user": "u", "reason": "x" * 501},
], ids=["nothing", "user+session", "agent+token", "empty", "unknown-field", "long-reason"])
def test_a_malformed_revocation_request_is_a_400(stack: RevocationStack, admin: str,
                                                 body: dict) -> None:
    response = stack.admin("POST", "/admin/revocations", admin, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_admin_me_and_agents(stack: RevocationStack, admin: str) -> None:
    me = stack.admin("GET", "/admin/me", admin).json()
    assert me["subject"] == "root"
    assert all(me["can"].values())
    plain = stack.admin("GET", "/admin/me", own_token(stack, "someone")).json()
    assert plain["can"] == {"list_all_sessions": False, "revoke_any_session": False,
                            "read_all_audit": False, "list_revocations": False,
                            "list_agents": False, "revoke_agents": False,
                            "list_own_sessions": True}
    agents = stack.admin("GET", "/admin/agents", admin).json()["agents"]
    research = next(a for a in agents if a["client_id"] == "research-agent")
    assert research["may_delegate_to"] == ["summarizer-agent"]
    assert "secret_hash" not in str(agents)


def test_the_audit_trail_records_exchanges_with_reasons_and_revocations(
        stack: RevocationStack, admin: str) -> None:
    start = int(time.time())
    user, id_token = stack.login()
    minted = stack.mint(id_token, scope="crm:read crm:delete")
    stack.admin("POST", "/admin/revocations", admin, json={"session": minted.sid,
                                                           "reason": "audit test"})
    records = stack.admin("GET", f"/admin/audit?user={user}", admin).json()["records"]
    assert [r["type"] for r in records] == ["revocation", "exchange"]  # newest first
    revocation, exchange = records
    assert exchange["agent"] == "research-agent"
    assert exchange["granted"] == ["crm:read"]
    assert exchange["dropped"] == [{"scope": "crm:delete", "reason": "not_delegable_by_user"}]
    assert exchange["sid"] == minted.sid
    assert revocation["revoked_by"] == "root"
    assert revocation["reason"] == "audit test"
    assert revocation["entries"] == 1
    assert revocation["target"] == {"kind": "session", "sid": minted.sid}
    assert id_token not in str(records) and minted.token not in str(records)

    only_exchanges = stack.admin("GET", f"/admin/audit?user={user}&type=exchange",
                                 admin).json()["records"]
    assert [r["type"] for r in only_exchanges] == ["exchange"]
    by_agent = stack.admin("GET", "/admin/audit?agent=research-agent&limit=1000",
                           admin).json()["records"]
    assert minted.sid in {r.get("sid") for r in by_agent}
    future = stack.admin("GET", f"/admin/audit?user={user}&since={int(time.time()) + 60}",
                         admin).json()["records"]
    assert future == []
    past = stack.admin("GET", f"/admin/audit?user={user}&until={start - 60}",
                       admin).json()["records"]
    assert past == []
    assert stack.admin("GET", "/admin/audit?type=bogus", admin).status_code == 400
    listed = stack.admin("GET", "/admin/revocations", admin).json()["revocations"]
    assert any(r["reason"] == "audit test" for r in listed)

