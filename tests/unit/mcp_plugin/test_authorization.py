"""CerbosAuthorization over real loopback HTTP, with a scripted PDP instead of Cerbos.

What is checked here is the plugin's own behaviour: one batched question per list, what
attributes are sent, refusals indistinguishable from unknown names, step-up hints, the
decision log. Policy semantics with the real Cerbos are in tests/e2e.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from agent_broker_demo.crm_server import build_protected_server
from mcp_plugin import protect
from mcp_plugin.testing import Endpoint, FakeBroker
from tests.unit.mcp_plugin.conftest import ScriptedPDP

Serve = Callable[..., tuple[str, FakeBroker, ScriptedPDP]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    stack: list[Any] = []

    def start(**options: Any) -> tuple[str, FakeBroker, ScriptedPDP]:
        # these tests count the questions the PDP gets: no decision cache unless asked for
        options.setdefault("decision_cache_seconds", 0)
        endpoint = Endpoint()
        broker = FakeBroker(audience=endpoint.url)
        pdp = ScriptedPDP()
        mcp = build_protected_server(
            broker=broker.issuer, resource=endpoint.url, cerbos=pdp, redis_url=None,
            http_client=broker.http_client(), **options,
        )
        context = endpoint.serve(mcp.http_app(path=endpoint.path))
        context.__enter__()
        stack.append((context, endpoint))
        return endpoint.url, broker, pdp

    yield start
    for context, endpoint in reversed(stack):
        context.__exit__(None, None, None)
        endpoint.close()


async def test_list_is_one_batched_question(serve: Serve) -> None:
    url, broker, pdp = serve()
    token = broker.tokens.mint(scopes=["crm:read", "crm:write"])
    async with Client(url, auth=token) as client:
        pdp.calls.clear()
        tools = await client.list_tools()
    assert sorted(t.name for t in tools) == [
        "add_note", "get_contact", "list_deals", "search_contacts", "update_contact",
    ]
    assert len(pdp.calls) == 1
    principal, items = pdp.calls[0]
    assert len(items) == 8
    assert {i.action for i in items} >= {"tools/list::send_email", "tools/list::delete_contact"}
    assert all("arguments" not in i.resource.attr for i in items)
    assert principal.attr["agent"] == "research-agent"


async def test_call_sends_arguments_tags_and_annotations(serve: Serve) -> None:
    url, broker, pdp = serve()
    token = broker.tokens.mint(scopes=["email:send"])
    async with Client(url, auth=token) as client:
        result = await client.call_tool(
            "send_email", {"to": "bob@example.com", "subject": "hi", "body": "text"}
        )
    assert result.data == {"status": "queued", "id": 1}
    calls = [i for _, items in pdp.calls for i in items if i.action.startswith("tools/call::")]
    assert [i.action for i in calls] == ["tools/call::send_email"]
    attr = calls[0].resource.attr
    assert attr["arguments"] == {"to": "bob@example.com", "subject": "hi", "body": "text"}
    assert "scope:email:send" in attr["tags"]
    assert attr["annotations"]["openWorldHint"] is True


async def test_a_call_is_one_question(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """The modern transport checks the call's Mcp-Param headers against the tool's schema
    without listing tools (FastMCP's schema hook): the call is the one question asked."""
    url, broker, pdp = serve()
    token = broker.tokens.mint(scopes=["crm:read"])
    async with Client(url, auth=token) as client:
        await client.list_tools()  # the client's own listing, before the call
        pdp.calls.clear()
        with caplog.at_level(logging.INFO, logger="mcp_plugin.decisions"):
            result = await client.call_tool("search_contacts", {"query": "ada"})
    assert "Ada Lovelace" in str(result.content)
    assert [[i.action for i in items] for _, items in pdp.calls] == [
        ["tools/call::search_contacts"]]
    assert pdp.calls[0][1][0].resource.attr["arguments"] == {"query": "ada"}
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "mcp_plugin.decisions"]
    assert [line["action"] for line in lines] == ["tools/call::search_contacts"]


async def test_denied_call_looks_exactly_like_an_unknown_tool(serve: Serve) -> None:
    url, broker, pdp = serve()
    token = broker.tokens.mint(scopes=["email:send"])
    async with Client(url, auth=token) as client:
        with pytest.raises(ToolError) as denied:
            await client.call_tool("send_email", {"to": "eve@evil.test", "subject": "s",
                                                  "body": "b"})
        with pytest.raises(ToolError) as unknown:
            await client.call_tool("no_such_tool", {})
    assert str(denied.value) == "Unknown tool: 'send_email'"
    assert str(unknown.value) == "Unknown tool: 'no_such_tool'"
    asked = [i.action for _, items in pdp.calls for i in items]
    assert "tools/call::no_such_tool" in asked  # asked anyway: same timing as a denial
    assert asked.count("tools/call::send_email") == 1  # decided once


async def test_reads_and_prompts_refuse_like_unknown_ones(serve: Serve) -> None:
    url, broker, _ = serve()
    async with Client(url, auth=broker.tokens.mint(scopes=["crm:write"])) as client:
        assert await client.list_resources() == []
        assert await client.list_resource_templates() == []
        assert await client.list_prompts() == []
        errors = []
        for uri in ("crm://contacts/1", "crm://nothing"):
            with pytest.raises(Exception) as caught:  # noqa: PT011 - compared below
                await client.read_resource(uri)
            errors.append(str(caught.value).replace(uri, "<uri>"))
        assert errors[0] == errors[1]
        prompt_errors = []
        for name in ("summarize_account", "no_prompt"):
            with pytest.raises(Exception) as caught:  # noqa: PT011 - compared below
                await client.get_prompt(name, {"contact_id": "1"})
            prompt_errors.append(str(caught.value).replace(name, "<name>"))
        assert prompt_errors[0] == prompt_errors[1]
    async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
        contents = await client.read_resource("crm://contacts/2")
        assert "Grace Hopper" in str(contents)
        assert [p.name for p in await client.list_prompts()] == ["summarize_account"]


def _metadata_url(url: str) -> str:
    return url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize("routing", [
    pytest.param({}, id="body only"),
    pytest.param({"Mcp-Method": "tools/call", "Mcp-Name": "update_contact"},
                 id="modern routing headers"),
])
async def test_missing_scope_gets_a_403_step_up_challenge(
    serve: Serve, routing: dict[str, str]
) -> None:
    url, broker, _ = serve(decision_cache_seconds=60)
    token = broker.tokens.mint(scopes=["crm:read"])
    writer = broker.tokens.mint(scopes=["crm:read", "crm:write"])
    async with httpx.AsyncClient() as http:
        statuses = []
        for bearer in (writer, token, writer, token):  # the tool's scopes remembered, or not
            response = await http.post(
                url, json=_call("update_contact", {"contact_id": "1", "email": "a@b.c"}),
                headers={"Authorization": f"Bearer {bearer}",
                         "Accept": "application/json, text/event-stream", **routing},
            )
            statuses.append(response.status_code)
    assert [code == 403 for code in statuses] == [False, True, False, True]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope", scope="crm:write"')
    assert f'resource_metadata="{_metadata_url(url)}"' in challenge
    assert response.json()["scope"] == "crm:write"


async def test_no_step_up_for_who_could_never_use_the_tool(serve: Serve) -> None:
    url, broker, _ = serve()
    token = broker.tokens.mint(scopes=["crm:read"], roles=["support"])
    async with Client(url, auth=token) as client:
        with pytest.raises(ToolError, match=r"^Unknown tool: 'update_contact'$"):
            await client.call_tool("update_contact", {"contact_id": "1"})


async def test_in_band_step_up_hint_without_the_http_challenge(serve: Serve) -> None:
    url, broker, _ = serve(step_up_challenge=False)
    async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool("delete_contact", {"contact_id": "1"})
    assert str(caught.value) == (
        "Authorization failed for tool 'delete_contact': insufficient scope (required: crm:delete)"
    )


async def test_missing_token_is_401_with_resource_metadata(serve: Serve) -> None:
    url, _, pdp = serve()
    async with httpx.AsyncClient() as http:
        response = await http.post(url, json=_call("get_contact", {"contact_id": "1"}))
        metadata = (await http.get(_metadata_url(url))).json()
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge == f'Bearer resource_metadata="{_metadata_url(url)}"'
    assert metadata["resource"] == url
    assert metadata["authorization_servers"] == ["http://broker.test"]
    assert pdp.calls == []


async def test_decision_log_has_one_json_line_per_check_without_values(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    url, broker, _ = serve()
    token = broker.tokens.mint(sub="alice", scopes=["email:send"], actors=["sub", "main"])
    with caplog.at_level(logging.INFO, logger="mcp_plugin.decisions"):
        async with Client(url, auth=token) as client:
            await client.list_tools()
            await client.call_tool("send_email", {"to": "x@example.com",
                                                  "subject": "SECRET-SUBJECT", "body": "b"})
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "mcp_plugin.decisions"]
    listed = [line for line in lines if line["action"].startswith("tools/list::")]
    calls = [line for line in lines if line["action"].startswith("tools/call::")]
    # one line per tool per list (the client may list again), one for the call
    assert len(listed) % 8 == 0
    assert len(calls) == 1
    call = calls[0]
    assert call["principal"] == "alice"
    assert call["actors"] == ["sub", "main"]
    assert call["action"] == "tools/call::send_email"
    assert call["effect"] == "allow"
    assert call["argument_names"] == ["body", "subject", "to"]
    assert call["request_id"] == "fake"
    assert all("SECRET-SUBJECT" not in r.getMessage() for r in caplog.records)


async def test_without_a_verified_token_everything_is_denied_unasked() -> None:
    """In-memory transport: no HTTP, no bearer token, so nothing is listed or callable."""
    pdp = ScriptedPDP()
    mcp = build_protected_server(broker="http://broker.test", resource="http://x/mcp",
                                 cerbos=pdp, redis_url=None)
    async with Client(mcp) as client:
        assert await client.list_tools() == []
        result = await client.call_tool("get_contact", {"contact_id": "1"}, raise_on_error=False)
    assert result.is_error
    assert pdp.calls == []


def test_protect_refuses_a_server_that_already_has_auth() -> None:
    mcp = build_protected_server(broker="http://broker.test", resource="http://x/mcp",
                                 cerbos=ScriptedPDP(), redis_url=None)
    with pytest.raises(ValueError, match="already has an auth provider"):
        protect(mcp, broker="http://broker.test", resource="http://x/mcp", cerbos=ScriptedPDP())


async def test_a_call_looks_the_tool_up_once_with_the_tool_remembered(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastMCP looks the tool up itself before running it; the plugin's own lookup (for the
    tool's tags and annotations) is remembered as long as decisions are."""
    lookups: list[str] = []
    get_tool = FastMCP.get_tool

    async def counting(self: FastMCP[Any], name: str, version: Any = None) -> Any:
        lookups.append(name)
        return await get_tool(self, name, version)

    monkeypatch.setattr(FastMCP, "get_tool", counting)
    url, broker, _ = serve(decision_cache_seconds=60)
    async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
        await client.call_tool("search_contacts", {"query": "ada"})
        lookups.clear()
        for query in ("a", "b", "c"):
            await client.call_tool("search_contacts", {"query": query})
    assert lookups == ["search_contacts"] * 3
