"""Hypothesis on everything that parses attacker-controlled token text or claims.

Properties: a parser either returns a well-formed value or raises its own documented error
(never another exception a caller might not catch); what the broker builds, the broker and
the plugin both read back identically (the claim names are the only interface between them,
so a drift here would be a silent authorization bug). The scope algebra's properties are in
tests/unit/broker/test_scopes.py; the scope parameter parser is covered here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import claims as broker_claims
from broker.errors import InvalidScope
from broker.jws import TokenRejected, read_unverified
from broker.scopes import check_scope_syntax, parse_scope_param
from mcp_plugin import claims as plugin_claims
from tests.support.jose import b64url

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
NAMES = st.text(st.characters(codec="utf-8", exclude_characters=" "), min_size=1, max_size=12)
SCOPES = st.lists(st.from_regex(r"\A[a-z]{1,6}:[a-z]{1,6}\Z"), min_size=1, max_size=5,
                  unique=True)
TIMES = st.integers(min_value=0, max_value=2**40)
PROPERTIES = settings(max_examples=200, deadline=None)


def _act(chain_newest_first: list[str]) -> Any:
    act: Any = None
    for sub in reversed(chain_newest_first):
        act = {"sub": sub} if act is None else {"sub": sub, "act": act}
    return act



CLAIM_SETS = st.fixed_dictionaries(
    {name: JSON for name in broker_claims.REQUIRED},
    optional={"roles": JSON, "nbf": JSON},
)


@PROPERTIES
@given(act=JSON)
def test_broker_parse_act_returns_a_chain_or_value_error(act: Any) -> None:
    try:
        chain = broker_claims.parse_act(act)
    except ValueError:
        return
    assert chain and all(isinstance(agent, str) for agent in chain)
    assert len(chain) <= broker_claims.MAX_CHAIN


@PROPERTIES
@given(act=JSON)
def test_plugin_parse_actors_returns_a_chain_or_claims_error(act: Any) -> None:
    try:
        actors = plugin_claims.parse_actors(act)
    except plugin_claims.ClaimsError:
        return
    assert actors and all(isinstance(agent, str) and agent for agent in actors)


@PROPERTIES
@given(claims=CLAIM_SETS)
def test_broker_parse_agent_claims_accepts_only_well_formed_claims(claims: dict[str, Any]
                                                                    ) -> None:
    try:
        token = broker_claims.parse_agent_claims(claims)
    except ValueError:
        return
    assert token.chain[-1] == token.client_id
    assert all(isinstance(v, str) and v for v in (token.subject, token.sid, token.jti))
    assert isinstance(token.expires_at, int) and not isinstance(token.expires_at, bool)


@PROPERTIES
@given(claims=CLAIM_SETS)
def test_plugin_parse_claims_raises_only_claims_error(claims: dict[str, Any]) -> None:
    """The verifier turns ClaimsError into a refusal with a reason; anything else would be
    an unexpected verifier error (still a refusal, but not a designed one)."""
    try:
        parsed = plugin_claims.parse_claims(claims)
    except plugin_claims.ClaimsError:
        return
    assert parsed.actors[0] == parsed.client_id
    assert isinstance(parsed.expires_at, int)


@PROPERTIES
@given(chain=st.lists(NAMES, min_size=1, max_size=broker_claims.MAX_CHAIN, unique=True),
       scopes=SCOPES, subject=NAMES, roles=st.lists(NAMES, max_size=3, unique=True),
       issued_at=TIMES, ttl=st.integers(min_value=1, max_value=86_400))
def test_broker_and_plugin_read_the_claims_the_broker_builds_alike(
        chain: list[str], scopes: list[str], subject: str, roles: list[str], issued_at: int,
        ttl: int) -> None:
    built = broker_claims.build_agent_claims(
        issuer="http://broker.test", subject=subject, audience="http://mcp.test/mcp",
        client_id=chain[-1], scopes=scopes, chain=chain, roles=roles, sid="s1", jti="j1",
        issued_at=issued_at, expires_at=issued_at + ttl)
    wire = json.loads(json.dumps(built))  # as a verifier sees it after decoding
    broker_view = broker_claims.parse_agent_claims(wire)
    plugin_view = plugin_claims.parse_claims(wire)
    assert broker_view.chain == tuple(chain)
    assert plugin_view.actors == tuple(reversed(chain))  # the current actor first
    assert broker_view.scopes == frozenset(scopes) == frozenset(plugin_view.scopes)
    assert plugin_view.client_id == broker_view.client_id == chain[-1]
    assert plugin_view.subject == broker_view.subject == subject
    assert plugin_view.roles == tuple(roles) == broker_view.roles
    assert plugin_view.expires_at == broker_view.expires_at == issued_at + ttl


@PROPERTIES
@given(token=st.text(max_size=300))
def test_read_unverified_raises_only_token_rejected_on_any_text(token: str) -> None:
    try:
        header, claims = read_unverified(token, max_length=200)
    except TokenRejected:
        return
    assert isinstance(header, dict) and isinstance(claims, dict)


@PROPERTIES
@given(header=JSON, payload=JSON, signature=st.binary(max_size=64))
def test_read_unverified_on_well_framed_tokens_of_any_json(header: Any, payload: Any,
                                                           signature: bytes) -> None:
    token = ".".join(b64url(json.dumps(part).encode()) for part in (header, payload))
    token += "." + b64url(signature)
    try:
        parsed_header, claims = read_unverified(token, max_length=16 * 1024)
    except TokenRejected:
        return
    assert isinstance(parsed_header, dict) and isinstance(claims, dict)


@PROPERTIES
@given(value=st.text(max_size=200))
def test_scope_parameter_parses_or_is_invalid_scope(value: str) -> None:
    try:
        parsed = parse_scope_param(value)
    except InvalidScope:
        return
    if parsed is not None:
        assert len(set(parsed)) == len(parsed)
        for scope in parsed:
            assert check_scope_syntax(scope, allow_wildcard=True) == scope


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 2**64, True, "1"])
def test_non_numeric_dates_are_claims_errors(value: Any) -> None:
    base = {"iss": "i", "sub": "s", "aud": "a", "exp": 10, "iat": 1, "jti": "j",
            "client_id": "c", "scope": "x", "sid": "s", "act": {"sub": "c"}}
    with pytest.raises(plugin_claims.ClaimsError):
        plugin_claims.parse_claims({**base, "exp": value})
