"""Parsing a streamable HTTP POST for a tools/call, and the challenge header's shape."""

from __future__ import annotations

import json

import pytest

from mcp_plugin.step_up import challenge_header, tool_call_of


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t", "arguments": {"a": 1}}}, ("t", {"a": 1}), id="call"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t"}}, ("t", None), id="no-arguments"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None, id="list"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}, None,
                     id="no-name"),
        pytest.param([{"method": "tools/call"}], None, id="batch"),
    ],
)
def test_tool_call_of(body: object, expected: object) -> None:
    assert tool_call_of(json.dumps(body).encode()) == expected


def test_tool_call_of_garbage() -> None:
    assert tool_call_of(b"{tools/call") is None


def test_challenge_header() -> None:
    header = challenge_header(["crm:write", "email:send"], "http://x/.well-known/p", "why")
    assert header == (
        'Bearer error="insufficient_scope", scope="crm:write email:send", '
        'resource_metadata="http://x/.well-known/p", error_description="why"'
    )


def test_challenge_header_for_a_dpop_bound_token() -> None:
    header = challenge_header(["crm:write"], "http://x/.well-known/p", "why", dpop=True)
    assert header == (
        'DPoP error="insufficient_scope", scope="crm:write", algs="EdDSA ES256", '
        'resource_metadata="http://x/.well-known/p", error_description="why"'
    )
