"""Revocation at every grain, at the broker: introspection says inactive, exchanges refuse.

Real uvicorn broker, real Redis (Lua scripts), real Cerbos and OIDC provider. The plugin's
side (pub/sub to MCP servers) is in test_revocation_propagation.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis

from broker.revocation import RevocationTarget, TargetKind, plan_revocation
from broker.stores.redis import RedisKeys, connect
from broker.stores.redis_revocations import RedisRevocationStore
from tests.integration.conftest import basic
from tests.integration.revocation_support import RevocationStack, stack_fixture

stack = stack_fixture()


def revoke(stack: RevocationStack, **target: str) -> dict:
    response = stack.admin("POST", "/admin/revocations", stack.admin_token(),
                           json={**target, "reason": "test"})
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def wait_next_second() -> None:
    """User and agent cutoffs are whole seconds: a login in the revocation's second is covered."""
    time.sleep(1.05 - (time.time() % 1))


def test_session_revocation_cascades_to_every_descendant(stack: RevocationStack) -> None:
    _, id_token = stack.login()
    root = stack.mint(id_token)
    children = [stack.delegate(root), stack.delegate(root)]
    _, other_token = stack.login()
    unrelated = stack.mint(other_token)

    body = revoke(stack, session=root.sid)
    assert body["target"] == {"kind": "session", "sid": root.sid}
    assert body["entries"] == 3  # the root and both children
    assert not stack.is_active(root.token)
    assert not any(stack.is_active(c.token) for c in children)
    assert stack.is_active(unrelated.token)
    refused = stack.exchange(root.token, "summarizer-agent",
                             token_type="urn:ietf:params:oauth:token-type:access_token")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_revoking_a_child_leaves_its_parent_alone(stack: RevocationStack) -> None:
    _, id_token = stack.login()
    root = stack.mint(id_token)
    child = stack.delegate(root)
    revoke(stack, session=child.sid)
    assert stack.is_active(root.token)
    assert not stack.is_active(child.token)


def test_token_revocation_by_jti_covers_the_token_and_its_descendants(
        stack: RevocationStack) -> None:
    _, id_token = stack.login()
    root = stack.mint(id_token)
    child = stack.delegate(root)
    other = stack.mint(id_token)
    body = revoke(stack, token=root.jti)
    assert body["entries"] == 3  # jti, its session, the child session
    assert not stack.is_active(root.token)
    assert not stack.is_active(child.token)
    assert stack.is_active(other.token)


def test_user_revocation_covers_tokens_and_older_logins_but_not_new_ones(
        stack: RevocationStack) -> None:
    user, id_token = stack.login()
    first, second = stack.mint(id_token), stack.mint(id_token)
    child = stack.delegate(first)
    _, bystander_token = stack.login()
    bystander = stack.mint(bystander_token)

    revoke(stack, user=user)
    assert not any(stack.is_active(m.token) for m in (first, second, child))
    assert stack.is_active(bystander.token)
    again = stack.exchange(id_token)  # the stolen or cached login cannot be exchanged again
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant",
                            "error_description": "The subject token has been revoked."}

    wait_next_second()
    _, fresh_login = stack.login(user)
    assert stack.is_active(stack.mint(fresh_login).token)


def test_agent_revocation_covers_the_agent_anywhere_in_the_chain(
        stack: RevocationStack) -> None:
    _, id_token = stack.login()
    research = stack.mint(id_token)
    summarizer = stack.delegate(research)
    direct_summarizer = stack.mint(id_token, "summarizer-agent")

    revoke(stack, agent="research-agent")
    assert not stack.is_active(research.token)
    assert not stack.is_active(summarizer.token)  # acting on research-agent's authority
    assert stack.is_active(direct_summarizer.token)
    assert stack.exchange(id_token).json()["error"] == "invalid_grant"
    assert stack.exchange(id_token, "summarizer-agent").status_code == 200


def test_user_agent_pair_revocation_hits_only_that_pair(stack: RevocationStack) -> None:
    user, id_token = stack.login()
    _, other_token = stack.login()
    pair = stack.mint(id_token)
    same_user_other_agent = stack.mint(id_token, "summarizer-agent")
    same_agent_other_user = stack.mint(other_token)
    revoke(stack, user=user, agent="research-agent")
    assert not stack.is_active(pair.token)
    assert stack.is_active(same_user_other_agent.token)
    assert stack.is_active(same_agent_other_user.token)


def test_rfc7009_an_agent_revokes_its_own_token(stack: RevocationStack) -> None:
    _, id_token = stack.login()
    own = stack.mint(id_token)
    child = stack.delegate(own)
    with stack.http() as http:
        foreign = http.post("/oauth2/revoke", data={"token": child.token},
                            headers=basic("research-agent"))
        assert foreign.status_code == 400
        assert foreign.json()["error"] == "unauthorized_client"
        unauthenticated = http.post("/oauth2/revoke", data={"token": own.token})
        assert unauthenticated.status_code == 401
        garbage = http.post("/oauth2/revoke", data={"token": "not.a.token"},
                            headers=basic("research-agent"))
        assert garbage.status_code == 200  # RFC 7009 §2.2: invalid tokens are not an error
        missing = http.post("/oauth2/revoke", data={}, headers=basic("research-agent"))
        assert missing.json()["error"] == "invalid_request"
        assert stack.is_active(own.token)

        done = http.post("/oauth2/revoke",
                         data={"token": own.token, "token_type_hint": "access_token"},
                         headers=basic("research-agent"))
        assert done.status_code == 200
        assert done.headers["cache-control"] == "no-store"
    assert not stack.is_active(own.token)
    assert not stack.is_active(child.token)
    records = stack.admin("GET", "/admin/audit?type=revocation&agent=research-agent",
                          stack.admin_token()).json()["records"]
    assert records[0]["revoked_by"] == "client:research-agent"


def test_a_child_exchange_racing_a_session_revocation_never_survives_it(
        stack: RevocationStack) -> None:
    """Re-delegations run while the parent session is revoked: after the revoke returns, no
    token minted from that parent may still be active, however the two interleaved."""
    _, id_token = stack.login()
    parent = stack.mint(id_token)
    minted: list[str] = []

    async def race() -> None:
        loop = asyncio.get_running_loop()

        def delegate_once() -> None:
            response = stack.exchange(parent.token, "summarizer-agent",
                                      token_type="urn:ietf:params:oauth:token-type:access_token")
            if response.status_code == 200:
                minted.append(response.json()["access_token"])

        jobs = [loop.run_in_executor(None, delegate_once) for _ in range(12)]
        await asyncio.sleep(0.02)
        await loop.run_in_executor(None, lambda: revoke(stack, session=parent.sid))
        await asyncio.gather(*jobs)

    asyncio.run(race())
    assert not [t for t in minted if stack.is_active(t)]


def test_revocations_and_their_audit_records_are_written_as_documented(
        stack: RevocationStack, redis_url: str) -> None:
    """The wire format mcp_plugin reads (docs/revocation-protocol.md), pinned from this side."""
    user, id_token = stack.login()
    minted = stack.mint(id_token)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{stack.prefix}revoked")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"

    body = revoke(stack, session=minted.sid)
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    payload = json.loads(message["data"])
    assert payload["v"] == 1
    [[field, cutoff, forget_at, rid]] = payload["entries"]
    assert field == f"sid:{minted.sid}"
    assert cutoff == forget_at >= int(time.time())
    assert rid == body["id"]
    stored = json.loads(client.hget(f"{stack.prefix}revoked", field))
    assert stored == {"c": cutoff, "f": forget_at, "r": rid}
    assert client.zscore(f"{stack.prefix}revoked:forget", field) == forget_at
    client.close()
    assert user


async def test_entries_past_their_forget_time_are_pruned(redis_url: str) -> None:
    keys = RedisKeys("prune-test:")
    now = int(time.time())
    pinned = [now - 100.0]
    client = connect(redis_url, 1000)
    store = RedisRevocationStore(client, keys, 1000, lambda: pinned[0])
    old = plan_revocation(RevocationTarget(TargetKind.TOKEN, jti="old"), revoked_by="t",
                          reason="", now=now - 100, token_ttl=10, retention=10, leeway=0)
    await store.revoke(old)
    assert await store.cutoffs(["jti:old"]) == {"jti:old": now - 90}
    pinned[0] = now
    fresh = plan_revocation(RevocationTarget(TargetKind.TOKEN, jti="new"), revoked_by="t",
                            reason="", now=now, token_ttl=10, retention=10, leeway=0)
    await store.revoke(fresh)  # each revocation prunes what nobody can need any more
    assert await store.cutoffs(["jti:old", "jti:new"]) == {"jti:old": None, "jti:new": now + 10}
    await client.aclose()
