"""The claim names are the interface with the broker (contract §5): pin them here."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_plugin.claims import REQUIRED_CLAIMS, ClaimsError, parse_actors, parse_claims, parse_scopes
from mcp_plugin.testing import BrokerTokenFactory

RESOURCE = "http://127.0.0.1:8401/mcp"


def test_required_claims_are_the_contract_ones() -> None:
    contract = {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "sid", "act"}
    assert set(REQUIRED_CLAIMS) == contract


def _claims(**overrides: Any) -> dict[str, Any]:
    factory = BrokerTokenFactory("http://broker.test", audience=RESOURCE)
    return factory.claims(claims=overrides)


@pytest.mark.parametrize(
    ("act", "expected"),
    [
        pytest.param({"sub": "a"}, ("a",), id="one-agent"),
        pytest.param({"sub": "b", "act": {"sub": "a"}}, ("b", "a"), id="re-delegated"),
        pytest.param(
            {"sub": "c", "act": {"sub": "b", "act": {"sub": "a"}}}, ("c", "b", "a"), id="three"
        ),
    ],
)
def test_actors_are_listed_outermost_first(act: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert parse_actors(act) == expected


@pytest.mark.parametrize(
    "act",
    [
        pytest.param("agent", id="string"),
        pytest.param({}, id="no-sub"),
        pytest.param({"sub": ""}, id="empty-sub"),
        pytest.param({"sub": "b", "act": ["a"]}, id="inner-not-object"),
        pytest.param({"sub": 3}, id="sub-not-string"),
    ],
)
def test_malformed_act_is_refused(act: object) -> None:
    with pytest.raises(ClaimsError):
        parse_actors(act)


def test_act_nesting_is_bounded() -> None:
    act: dict[str, Any] = {"sub": "a0"}
    for i in range(1, 40):
        act = {"sub": f"a{i}", "act": act}
    with pytest.raises(ClaimsError, match="too deeply"):
        parse_actors(act)


def test_scopes_split_on_spaces_without_duplicates() -> None:
    assert parse_scopes("crm:read  email:send crm:read") == ("crm:read", "email:send")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"sid": None}, "missing claims: sid", id="no-sid"),
        pytest.param({"act": None, "jti": None}, "missing claims: jti, act", id="two-missing"),
        pytest.param({"sub": ""}, "sub must be", id="empty-sub"),
        pytest.param({"client_id": 7}, "client_id must be", id="client-not-string"),
        pytest.param({"scope": ["crm:read"]}, "scope must be", id="scope-list"),
        pytest.param({"aud": 3}, "aud must be", id="aud-number"),
        pytest.param({"exp": "soon"}, "exp must be", id="exp-string"),
        pytest.param({"iat": True}, "iat must be", id="iat-bool"),
        pytest.param({"roles": "admin"}, "roles must be", id="roles-string"),
        pytest.param({"act": {"sub": "someone-else"}}, "outermost act.sub", id="act-not-client"),
    ],
)
def test_bad_claims_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ClaimsError, match=message):
        parse_claims(_claims(**overrides))


def test_good_claims_parse() -> None:
    parsed = parse_claims(_claims())
    assert parsed.audiences == (RESOURCE,)
    assert parsed.actors == ("research-agent",)
    assert parsed.depth == 1
    assert parsed.roles == ("sales_rep",)
