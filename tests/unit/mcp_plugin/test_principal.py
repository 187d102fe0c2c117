"""Claims -> Cerbos principal, and components -> Cerbos resources (contract §6)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_plugin.principal import (
    action_name,
    build_principal,
    build_prompt_resource,
    build_tool_resource,
    build_uri_resource,
    scopes_from_tags,
)
from mcp_plugin.testing import BrokerTokenFactory

FACTORY = BrokerTokenFactory("http://broker.test", audience="http://127.0.0.1:8401/mcp")


@pytest.mark.parametrize(
    ("mint", "expected"),
    [
        pytest.param(
            {"sub": "alice", "roles": ["sales_rep"], "scopes": ["crm:read"],
             "client_id": "research-agent", "sid": "s1"},
            {"id": "alice", "roles": ("sales_rep", "user"),
             "attr": {"scopes": ["crm:read"], "agent": "research-agent",
                      "actors": ["research-agent"], "session": "s1", "depth": 1}},
            id="direct-agent",
        ),
        pytest.param(
            {"sub": "bob", "roles": [], "scopes": ["crm:read", "crm:write"],
             "actors": ["summarizer", "research-agent"], "sid": "s2"},
            {"id": "bob", "roles": ("user",),
             "attr": {"scopes": ["crm:read", "crm:write"], "agent": "summarizer",
                      "actors": ["summarizer", "research-agent"], "session": "s2", "depth": 2}},
            id="re-delegated-no-roles",
        ),
        pytest.param(
            {"sub": "carol", "roles": ["crm_admin", "user", "crm_admin"], "scopes": [],
             "actors": ["c", "b", "a"], "sid": "s3"},
            {"id": "carol", "roles": ("crm_admin", "user"),
             "attr": {"scopes": [], "agent": "c", "actors": ["c", "b", "a"], "session": "s3",
                      "depth": 3}},
            id="three-hops-duplicate-roles",
        ),
    ],
)
def test_principal_from_claims(mint: dict[str, Any], expected: dict[str, Any]) -> None:
    principal = build_principal(FACTORY.claims(**mint))
    assert principal.id == expected["id"]
    assert principal.roles == expected["roles"]
    assert dict(principal.attr) == expected["attr"]


def test_extra_scopes_only_add() -> None:
    principal = build_principal(FACTORY.claims(scopes=["crm:read"]), extra_scopes=["crm:write"])
    assert principal.attr["scopes"] == ["crm:read", "crm:write"]


def test_tool_resource_carries_tags_annotations_and_arguments() -> None:
    resource = build_tool_resource(
        "mcp_server", "send_email", tags={"scope:email:send", "crm"},
        annotations={"readOnlyHint": False, "destructiveHint": None},
        arguments={"to": "bob@example.com"},
    )
    assert resource.kind == "mcp_server"
    assert resource.id == "send_email"
    assert resource.attr == {
        "tool_name": "send_email",
        "tags": ["crm", "scope:email:send"],
        "annotations": {"readOnlyHint": False},
        "arguments": {"to": "bob@example.com"},
    }


def test_list_items_have_no_arguments() -> None:
    resource = build_tool_resource("k", "t", tags=set(), annotations=None)
    assert "arguments" not in resource.attr
    assert "annotations" not in resource.attr


def test_template_read_names_the_concrete_uri() -> None:
    resource = build_uri_resource(
        "mcp_server", "crm://contacts/42", tags=[], uri_template="crm://contacts/{id}"
    )
    assert resource.id == "crm://contacts/42"
    assert resource.attr["uri_template"] == "crm://contacts/{id}"


def test_prompt_resource() -> None:
    resource = build_prompt_resource("mcp_server", "summarize", tags=["a"], arguments={"x": "1"})
    assert resource.attr == {"prompt_name": "summarize", "tags": ["a"], "arguments": {"x": "1"}}


@pytest.mark.parametrize(
    ("operation", "name", "expected"),
    [
        pytest.param("tools/call", "send_email", "tools/call::send_email", id="tool"),
        pytest.param("resources/read", "crm://contacts/1", "resources/read::crm://contacts/1",
                     id="uri"),
    ],
)
def test_action_names_follow_cerbos_fastmcp(operation: str, name: str, expected: str) -> None:
    assert action_name(operation, name) == expected


def test_scopes_from_tags() -> None:
    tags = {"crm", "scope:crm:write", "scope:", "scope:email:send"}
    assert scopes_from_tags(tags) == ["crm:write", "email:send"]
