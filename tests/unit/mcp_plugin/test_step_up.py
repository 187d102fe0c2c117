"""Parsing a streamable HTTP POST for a tools/call, and the challenge header's shape."""

from __future__ import annotations

import json

import pytest

from mcp_plugin.step_up import challenge_header, tool_call_of


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t", "arguments": {"a": 1}}}, ("t", {"a": 1}, None),
                     id="call"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t"}}, ("t", None, None), id="no-arguments"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t", "_meta": {"fastmcp": {"version": "1"}}}},
                     ("t", None, ("1", None, None)), id="pinned-version"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": "t", "_meta": "v1"}}, ("t", None, None),
                     id="meta-not-an-object"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, None, id="list"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}, None,
                     id="no-name"),
        pytest.param([{"method": "tools/call"}], None, id="batch"),
    ],
)
def test_tool_call_of(body: object, expected: object) -> None:
    call = tool_call_of(json.dumps(body).encode())
    version = None if call is None or call.version is None else (
        call.version.eq, call.version.gte, call.version.lt)
    assert (None if call is None else (call.name, call.arguments, version)) == expected


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
