"""The grant's decisions, with in-memory ports and a pinned clock (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from broker import scopes, tokens
from broker.config import BrokerSettings
from broker.errors import (
    DependencyUnavailable,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
)
from broker.exchange import (
    ACCESS_TOKEN_TYPE,
    GRANT_TYPE,
    ID_TOKEN_TYPE,
    TokenExchangeGrant,
    parse_exchange_request,
)
from broker.keys import Keyring, generate_key
from broker.ports import DelegationQuestion, SubjectIdentity
from broker.secrets import hash_secret
from broker.stores.memory import MemorySessionStore

T0 = 1_800_000_000
ISSUER = "https://broker.test"
MCP = "https://crm.test/mcp"
HASH = hash_secret("x" * 32, ln=10)


def settings(**over) -> BrokerSettings:
    auth = {"method": "client_secret_basic", "secret_hash": HASH}
    base = {
        "issuer": ISSUER, "max_delegation_depth": 2,
        "upstream_issuers": [{"issuer": "https://idp.test", "audiences": ["agent-host"]}],
        "resources": [{"uri": MCP, "scopes": ["crm:read", "crm:write", "crm:delete"]},
                      {"uri": "https://docs.test/mcp", "scopes": ["docs:read"]}],
        "agents": [
            {"client_id": "agent", "auth": auth, "scopes": ["crm:*"], "resources": [MCP],
             "may_delegate_to": ["helper", "agent"]},
            {"client_id": "helper", "auth": auth, "scopes": ["crm:read", "crm:write"],
             "resources": [MCP], "may_delegate_to": ["deep"]},
            {"client_id": "deep", "auth": auth, "scopes": ["crm:read"], "resources": [MCP]},
            {"client_id": "loner", "auth": auth, "scopes": ["crm:read"], "resources": [MCP]},
        ],
    }
    return BrokerSettings(**{**base, **over})


class Upstream:
    def __init__(self, expires_at: int = T0 + 3600) -> None:
        self.expires_at = expires_at
        self.issued_at = T0 - 60
        self.fail = False

    async def validate_subject_token(self, token: str) -> SubjectIdentity:
        if self.fail:
            raise DependencyUnavailable("idp down")
        if token != "user-token":
            raise InvalidGrant()
        return SubjectIdentity("https://idp.test", "alice", ("sales_rep",), self.expires_at,
                               {"sub": "alice", "email_verified": True, "exp": self.expires_at},
                               issued_at=self.issued_at)


@dataclass
class Policy:
    allowed: frozenset[str] = frozenset({"crm:read", "crm:write"})
    questions: list[DelegationQuestion] = field(default_factory=list)
    fail: bool = False

    async def delegable_scopes(self, question: DelegationQuestion) -> frozenset[str]:
        if self.fail:
            raise DependencyUnavailable("pdp down")
        self.questions.append(question)
        return self.allowed & frozenset(question.scopes)


@pytest.fixture
def world():
    ring = Keyring([generate_key("EdDSA", T0 - 10)], max_token_ttl=300, grace=0)
    cfg = settings()
    store, upstream, policy = MemorySessionStore(), Upstream(), Policy()
    grant = TokenExchangeGrant(cfg, keyring=lambda now: ring, upstream=upstream, policy=policy,
                               sessions=store, clock=lambda: T0)
    return grant, cfg, store, upstream, policy, ring


def request(token="user-token", scope=None, resource=MCP, token_type=ACCESS_TOKEN_TYPE):
    form = {"grant_type": GRANT_TYPE, "subject_token": token, "subject_token_type": token_type,
            "resource": resource}
    if scope is not None:
        form["scope"] = scope
    return parse_exchange_request(form)


async def test_direct_exchange_is_the_intersection_and_records_why(world) -> None:
    grant, cfg, store, _, policy, ring = world
    result = await grant.exchange(cfg.agent("agent"), request())
    assert result.scope == "crm:read crm:write"
    assert result.expires_in == 300
    session = store.sessions[result.session.sid]
    assert [(d.scope, d.reason) for d in session.scopes_dropped] == [
        ("crm:delete", scopes.NOT_DELEGABLE)]
    assert session.actors == ("agent",) and session.parent_sid is None
    assert len(policy.questions) == 1, "one batched PDP question per exchange"
    assert policy.questions[0].principal_attr == {"sub": "alice", "email_verified": True}
    assert policy.questions[0].request_id == session.sid  # Cerbos's log names the session
    token = tokens.verify(result.access_token, ring, issuer=ISSUER, now=T0, leeway=0,
                          audience=MCP)
    assert token.claims["act"] == {"sub": "agent"}
    assert token.claims["roles"] == ["sales_rep"]
    assert token.sid == session.sid and token.jti == session.jti


async def test_token_never_outlives_the_subject_token(world) -> None:
    grant, cfg, _, upstream, _, _ = world
    upstream.expires_at = T0 + 42
    assert (await grant.exchange(cfg.agent("agent"), request())).expires_in == 42


async def test_redelegation_narrows_nests_and_links(world) -> None:
    grant, cfg, _, _, _, ring = world
    parent = await grant.exchange(cfg.agent("agent"), request(scope="crm:read"))
    child = await grant.exchange(cfg.agent("helper"), request(token=parent.access_token,
                                                               scope="crm:read crm:write"))
    assert child.scope == "crm:read"
    assert [(d.scope, d.reason) for d in child.session.scopes_dropped] == [
        ("crm:write", scopes.NOT_IN_PARENT)]
    claims = tokens.verify(child.access_token, ring, issuer=ISSUER, now=T0, leeway=0).claims
    assert claims["act"] == {"sub": "helper", "act": {"sub": "agent"}}
    assert claims["exp"] <= tokens.verify(parent.access_token, ring, issuer=ISSUER, now=T0,
                                          leeway=0).expires_at
    assert child.session.parent_sid == parent.session.sid
    assert child.session.root_sid == parent.session.sid


@pytest.mark.parametrize(
    ("first", "second", "error"),
    [
        pytest.param("agent", "loner", InvalidGrant, id="not-in-may-delegate-to"),
        pytest.param("agent", "agent", InvalidGrant, id="agent-twice-in-chain"),
    ],
)
async def test_redelegation_refusals(world, first, second, error) -> None:
    grant, cfg, *_ = world
    parent = await grant.exchange(cfg.agent(first), request())
    with pytest.raises(error):
        await grant.exchange(cfg.agent(second), request(token=parent.access_token))


async def test_depth_is_capped(world) -> None:
    grant, cfg, *_ = world
    one = await grant.exchange(cfg.agent("agent"), request())
    two = await grant.exchange(cfg.agent("helper"), request(token=one.access_token))
    with pytest.raises(InvalidGrant, match="depth"):
        await grant.exchange(cfg.agent("deep"), request(token=two.access_token))


async def test_redelegation_requires_a_live_parent_session(world) -> None:
    grant, cfg, store, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), request())
    store.sessions.clear()
    with pytest.raises(InvalidGrant):
        await grant.exchange(cfg.agent("helper"), request(token=parent.access_token))


async def test_redelegation_keeps_the_resource(world) -> None:
    grant, cfg, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), request())
    with pytest.raises(InvalidTarget):
        await grant.exchange(cfg.agent("helper"), request(token=parent.access_token,
                                                           resource="https://crm.test/other"))


async def test_agent_token_cannot_pose_as_an_id_token(world) -> None:
    grant, cfg, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), request())
    with pytest.raises(InvalidRequest):
        await grant.exchange(cfg.agent("helper"), request(token=parent.access_token,
                                                           token_type=ID_TOKEN_TYPE))


@pytest.mark.parametrize(
    ("agent", "req", "error"),
    [
        pytest.param("agent", lambda: request(resource="https://unknown.test/mcp"),
                     InvalidTarget, id="unknown-resource"),
        pytest.param("agent", lambda: request(resource="https://docs.test/mcp"),
                     InvalidTarget, id="resource-not-allowed-for-agent"),
        pytest.param("agent", lambda: request(scope="crm:delete"), InvalidScope,
                     id="only-undelegable-scope"),
        pytest.param("deep", lambda: request(scope="crm:write"), InvalidScope,
                     id="only-undeclared-scope"),
        pytest.param("agent", lambda: request(token="garbage"), InvalidGrant,
                     id="bad-subject-token"),
    ],
)
async def test_refusals(world, agent, req, error) -> None:
    grant, cfg, store, *_ = world
    with pytest.raises(error):
        await grant.exchange(cfg.agent(agent), req())
    assert not store.sessions, "nothing is written for a refused exchange"


@pytest.mark.parametrize("broken", ["policy", "store", "upstream"])
async def test_dependency_down_means_503_and_nothing_minted(world, broken) -> None:
    grant, cfg, store, upstream, policy, _ = world
    {"policy": policy, "store": store, "upstream": upstream}[broken].fail = True
    with pytest.raises(TemporarilyUnavailable):
        await grant.exchange(cfg.agent("agent"), request())
    assert not store.sessions


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param({}, InvalidRequest, id="empty"),
        pytest.param({"subject_token": "t"}, InvalidRequest, id="no-type"),
        pytest.param({"subject_token": "t", "subject_token_type": "urn:x"}, InvalidRequest,
                     id="unknown-type"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE},
                     InvalidRequest, id="no-resource"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE,
                      "resource": MCP + "#frag"}, InvalidTarget, id="fragment"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE,
                      "resource": "/relative"}, InvalidTarget, id="relative"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE,
                      "resource": MCP, "audience": "https://x.test"}, InvalidTarget,
                     id="resource-audience-disagree"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE,
                      "resource": MCP, "requested_token_type": ID_TOKEN_TYPE}, InvalidRequest,
                     id="requested-id-token"),
        pytest.param({"subject_token": "t", "subject_token_type": ACCESS_TOKEN_TYPE,
                      "resource": MCP, "actor_token": "a"}, InvalidRequest,
                     id="actor-token-without-type"),
    ],
)
def test_request_validation(form, error) -> None:
    with pytest.raises(error):
        parse_exchange_request(form)


@pytest.mark.parametrize(("entry", "revoked"), [
    ({"user:alice": T0 - 100}, True),      # the login (iat T0 - 100) is not newer than the cutoff
    ({"user:alice": T0 - 101}, False),     # logged in again after the revocation
    ({"agent:agent": T0}, True),
    ({"pair:agent alice": T0}, True),
    ({"pair:helper alice": T0}, False),
    ({"user:bob": T0}, False),
], ids=str)
async def test_a_revoked_subject_material_is_invalid_grant_and_writes_nothing(
        world, entry: dict[str, int], revoked: bool) -> None:
    grant, cfg, store, upstream, _, _ = world
    upstream.issued_at = T0 - 100
    store.cutoffs.update(entry)
    if not revoked:
        await grant.exchange(cfg.agent("agent"), request())
        return
    with pytest.raises(InvalidGrant, match="revoked"):
        await grant.exchange(cfg.agent("agent"), request())
    assert store.sessions == {}


@pytest.mark.parametrize("field_of", [
    lambda parent: f"sid:{parent.session.sid}",
    lambda parent: f"jti:{parent.session.jti}",
    lambda parent: "agent:helper",  # the new agent of the chain is covered too
], ids=["parent-session", "parent-token", "new-agent"])
async def test_redelegation_from_revoked_material_is_refused(world, field_of) -> None:
    grant, cfg, store, _, _, _ = world
    parent = await grant.exchange(cfg.agent("agent"), request(scope="crm:read"))
    store.cutoffs[field_of(parent)] = T0 + 10_000
    with pytest.raises(InvalidGrant, match="revoked"):
        await grant.exchange(cfg.agent("helper"), request(token=parent.access_token))
    assert list(store.sessions) == [parent.session.sid]
