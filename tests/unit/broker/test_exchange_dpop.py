"""The grant's DPoP rules (RFC 9449): who must prove a key, what gets bound, and that a bound
token can only be re-delegated by the holder of its key. In-memory ports, a pinned clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker import tokens
from broker.errors import InvalidDPoPProof
from broker.exchange import TokenExchangeGrant
from tests.unit.broker.test_exchange import (
    ISSUER,
    T0,
    Policy,
    Upstream,
    request,
    settings,
)
from tests.unit.broker.test_exchange import world as world

KEY, THIEF = "jkt-of-the-agents-key", "jkt-of-a-thiefs-key"


def claims_of(world, token: str) -> dict:
    ring = world[5]
    return dict(tokens.verify(token, ring, issuer=ISSUER, now=T0, leeway=0).claims)


async def test_a_proof_binds_the_token_even_for_an_agent_not_required_to(world) -> None:
    grant, cfg, *_ = world
    result = await grant.exchange(cfg.agent("agent"), replace(request(), dpop_jkt=KEY))
    assert claims_of(world, result.access_token)["cnf"] == {"jkt": KEY}
    assert result.to_body()["token_type"] == "DPoP"


async def test_without_a_proof_the_token_is_an_unbound_bearer_token(world) -> None:
    grant, cfg, *_ = world
    result = await grant.exchange(cfg.agent("agent"), request())
    assert "cnf" not in claims_of(world, result.access_token)
    assert result.to_body()["token_type"] == "Bearer"


async def test_a_dpop_bound_agent_must_send_a_proof(world) -> None:
    store, ring = world[2], world[5]
    agents = [{**a.model_dump(), "dpop_bound": a.client_id == "agent"}
              for a in settings().agents]
    cfg = settings(agents=agents)
    grant = TokenExchangeGrant(cfg, keyring=lambda now: ring, upstream=Upstream(),
                               policy=Policy(), sessions=store, clock=lambda: T0)
    with pytest.raises(InvalidDPoPProof):
        await grant.exchange(cfg.agent("agent"), request())
    assert store.sessions == {}, "nothing written"
    bound = await grant.exchange(cfg.agent("agent"), replace(request(), dpop_jkt=KEY))
    assert claims_of(world, bound.access_token)["cnf"] == {"jkt": KEY}


@pytest.mark.parametrize("proven", [None, THIEF], ids=["no-proof", "another-key"])


async def test_a_bound_parent_is_redelegated_only_with_a_proof_by_its_key(
        world, proven) -> None:
    """A stolen bound token plus a sub-agent's credentials gets nothing: no fresh token,
    bound to the thief's key or to none."""
    grant, cfg, store, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), replace(request(), dpop_jkt=KEY))
    sessions = len(store.sessions)
    with pytest.raises(InvalidDPoPProof):
        await grant.exchange(cfg.agent("helper"),
                             replace(request(parent.access_token), dpop_jkt=proven))
    assert len(store.sessions) == sessions


async def test_a_bound_parent_redelegated_with_its_key_gives_a_token_bound_to_it(
        world) -> None:
    grant, cfg, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), replace(request(), dpop_jkt=KEY))
    child = await grant.exchange(cfg.agent("helper"),
                                 replace(request(parent.access_token), dpop_jkt=KEY))
    assert claims_of(world, child.access_token)["cnf"] == {"jkt": KEY}


async def test_an_unbound_parent_may_be_redelegated_into_a_bound_child(world) -> None:
    grant, cfg, *_ = world
    parent = await grant.exchange(cfg.agent("agent"), request())
    child = await grant.exchange(cfg.agent("helper"),
                                 replace(request(parent.access_token), dpop_jkt=KEY))
    assert claims_of(world, child.access_token)["cnf"] == {"jkt": KEY}
