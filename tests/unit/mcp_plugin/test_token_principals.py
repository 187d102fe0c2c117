"""The principal of a token is built once per token, and only ever for the claims at hand."""

from __future__ import annotations

from typing import Any

from fastmcp.server.auth import AccessToken

from mcp_plugin.authorization import TokenPrincipals
from mcp_plugin.principal import Principal, build_principal


def claims(**over: Any) -> dict[str, Any]:
    return {"sub": "alice", "client_id": "research-agent", "scope": "crm:read",
            "sid": "s1", "jti": "j1", "iss": "https://broker", "aud": "https://crm/mcp",
            "iat": 1, "exp": 2, "act": {"sub": "research-agent"}, **over}


def token(text: str = "t1", **over: Any) -> AccessToken:
    return AccessToken(token=text, client_id="research-agent", scopes=["crm:read"],
                       claims=claims(**over))


def test_the_same_token_gets_the_same_principal_object() -> None:
    principals = TokenPrincipals()
    first = principals.of(token())
    assert first == build_principal(claims())
    assert principals.of(token()) is first


def test_other_claims_under_the_same_text_get_their_own_principal() -> None:
    principals = TokenPrincipals()
    principals.of(token())
    wider = principals.of(token(scope="crm:read crm:write"))
    assert wider is not None and wider.attr["scopes"] == ["crm:read", "crm:write"]
    assert principals.of(token()) == build_principal(claims())


def test_a_remembered_principal_survives_changes_to_the_claims_it_came_from() -> None:
    principals = TokenPrincipals()
    presented = token()
    first = principals.of(presented)
    assert presented.claims is not None
    presented.claims["act"]["sub"] = "someone-else"  # downstream code mutating its copy
    assert principals.of(token()) is first  # the pristine claims still match
    assert principals.of(presented) is None  # an actor that is not the agent: no principal


def test_no_token_or_unreadable_claims_have_no_principal() -> None:
    principals = TokenPrincipals()
    assert principals.of(None) is None
    assert principals.of(AccessToken(token="t", client_id="c", scopes=[], claims={})) is None
    assert principals.of(token(sub=None)) is None


def test_memory_is_bounded_oldest_first() -> None:
    principals = TokenPrincipals(max_entries=2)
    first = principals.of(token("a"))
    principals.of(token("b"))
    principals.of(token("c"))  # drops "a"
    again = principals.of(token("a"))
    assert again == first and again is not first


def test_the_canonical_spelling_is_computed_once_and_orders_keys() -> None:
    principal = Principal("alice", ("user",), {"b": 1, "a": [2]})
    assert principal.canonical == '["alice",["user"],{"a":[2],"b":1}]'
    assert principal.canonical is principal.canonical
    assert Principal("x", (), {"n": float("nan")}).canonical is None
