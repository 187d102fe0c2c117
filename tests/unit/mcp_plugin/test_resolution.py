"""The plugin asks Cerbos about the component FastMCP will run (mcp_plugin/resolution.py):
the version a request pins, the tool as it is now, what a completion refers to."""

from __future__ import annotations

from typing import Any

import httpx
import mcp_types as mt
import pytest
from fastmcp import Client, FastMCP, FastMCPApp
from fastmcp.exceptions import ToolError
from fastmcp.server.providers.addressing import hashed_backend_name

from agent_broker_demo.crm_server import build_server
from mcp_plugin.pdp import Decision
from mcp_plugin.resolution import completion_reference, requested_version
from tests.unit.mcp_plugin.conftest import ScriptedPDP, serve_protected


@pytest.mark.parametrize(("meta", "expected"), [
    (None, None),
    ({}, None),
    ({"fastmcp": {"version": "1"}}, ("1", None, None)),
    ({"fastmcp": {"version": {"gte": "1", "lt": "2"}}}, (None, "1", "2")),
    ({"fastmcp": {"version": {}}}, None),
    ({"fastmcp": {"version": 3}}, None),  # FastMCP reads a string only
    ({"fastmcp": "1"}, None),
])
def test_the_pinned_version_is_read_as_fastmcp_reads_it(meta: Any, expected: Any) -> None:
    version = requested_version(meta)
    assert (None if version is None else (version.eq, version.gte, version.lt)) == expected


@pytest.mark.parametrize(("message", "expected"), [
    ({"ref": {"type": "ref/prompt", "name": "brief"}}, ("ref/prompt", "brief")),
    ({"ref": {"type": "ref/resource", "uri": "crm://x/{id}"}}, ("ref/resource", "crm://x/{id}")),
    (mt.CompleteRequestParams(ref=mt.PromptReference(type="ref/prompt", name="brief"),
                              argument=mt.CompletionArgument(name="a", value="")),
     ("ref/prompt", "brief")),
    ({"ref": "brief"}, None),
    ({}, None),
])
def test_a_completion_reference_is_read_from_a_mapping_or_a_model(message: Any,
                                                                   expected: Any) -> None:
    assert completion_reference(message) == expected


async def test_a_remembered_tool_removed_since_is_unknown() -> None:
    mcp = build_server()
    with serve_protected(mcp, ScriptedPDP(), decision_cache_seconds=60) as (url, broker):
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
            await client.call_tool("search_contacts", {"query": "ada"})
            mcp.local_provider.remove_tool("search_contacts")
            with pytest.raises(ToolError, match=r"^Unknown tool: 'search_contacts'$"):
                await client.call_tool("search_contacts", {"query": "ada"})


async def test_a_version_pinned_call_is_asked_about_that_version() -> None:
    """FastMCP runs the version a call pins (`_meta.fastmcp.version`); the question must carry
    that version's tags, not the newest version's."""
    mcp = FastMCP("versions")

    @mcp.tool(name="export", version="1", tags={"scope:crm:admin"})
    def export_v1() -> str:
        return "everything, v1"

    @mcp.tool(name="export", version="2", tags={"scope:crm:read"})
    def export_v2() -> str:
        return "my records, v2"

    with serve_protected(mcp, ScriptedPDP(), decision_cache_seconds=60) as (url, broker):
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
            newest = await client.call_tool("export", {})
            with pytest.raises(ToolError, match=r"insufficient scope \(required: crm:admin\)$"):
                await client.call_tool("export", {}, meta={"fastmcp": {"version": "1"}})
            pinned = await client.call_tool("export", {}, meta={"fastmcp": {"version": "2"}})
    assert newest.data == pinned.data == "my records, v2"


async def test_version_pinned_prompts_and_resources_are_asked_about_that_version() -> None:
    mcp = FastMCP("versions")

    @mcp.prompt(name="brief", version="1", tags={"scope:crm:admin"})
    def brief_v1() -> str:
        return "everything"

    @mcp.prompt(name="brief", version="2", tags={"scope:crm:read"})
    def brief_v2() -> str:
        return "mine"

    @mcp.resource("crm://report", name="report_v1", version="1", tags={"scope:crm:admin"})
    def report_v1() -> str:
        return "everything"

    @mcp.resource("crm://report", name="report_v2", version="2", tags={"scope:crm:read"})
    def report_v2() -> str:
        return "mine"

    with serve_protected(mcp, ScriptedPDP()) as (url, broker):
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
            assert "mine" in str(await client.get_prompt("brief", version="2"))
            assert "mine" in str(await client.read_resource("crm://report", version="2"))
            with pytest.raises(Exception, match="Unknown prompt"):
                await client.get_prompt("brief", version="1")
            with pytest.raises(Exception, match="Resource not found"):
                await client.read_resource("crm://report", version="1")


async def test_completion_for_a_hidden_prompt_or_template_suggests_nothing() -> None:
    """Argument completion would otherwise list values (customer names...) for a prompt or
    resource template the caller may not even see."""
    mcp = FastMCP("completions")

    @mcp.prompt(tags={"scope:crm:admin"})
    def export_brief(customer: str) -> str:
        return f"export {customer}"

    @mcp.resource("crm://exports/{customer}", tags={"scope:crm:admin"})
    def export_file(customer: str) -> str:
        return customer

    @mcp.completion
    def complete(ref: Any, argument: Any, context: Any) -> list[str]:
        return [c for c in ("acme", "globex") if c.startswith(argument.value)]

    prompt = mt.PromptReference(type="ref/prompt", name="export_brief")
    template = mt.ResourceTemplateReference(type="ref/resource", uri="crm://exports/{customer}")
    suggested = {}
    with serve_protected(mcp, ScriptedPDP()) as (url, broker):
        for scope in ("crm:read", "crm:admin"):
            async with Client(url, auth=broker.tokens.mint(scopes=[scope])) as client:
                suggested[scope] = [
                    (await client.complete(ref, {"name": "customer", "value": "a"})).values
                    for ref in (prompt, template)]
    assert suggested == {"crm:read": [[], []], "crm:admin": [["acme"], ["acme"]]}


async def test_a_call_pinned_to_a_version_it_may_run_gets_no_step_up_for_the_newest() -> None:
    """The HTTP step-up challenge (403 before dispatch) is about the version the call pins: a
    call the pinned version allows runs, whatever scopes a newer version declares."""
    mcp = FastMCP("versions")

    @mcp.tool(name="export", version="1", tags={"scope:crm:read"})
    def export_v1() -> str:
        return "my records, v1"

    @mcp.tool(name="export", version="2", tags={"scope:crm:admin"})
    def export_v2() -> str:
        return "everything, v2"

    def call(meta: dict[str, Any] | None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": "export", "arguments": {}}
        if meta is not None:
            params["_meta"] = meta
        return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}

    with serve_protected(mcp, ScriptedPDP(), decision_cache_seconds=60) as (url, broker):
        headers = {"Authorization": f"Bearer {broker.tokens.mint(scopes=['crm:read'])}",
                   "Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(headers=headers) as http:
            pinned = await http.post(url, json=call({"fastmcp": {"version": "1"}}))
            newest = await http.post(url, json=call(None))
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
            modern = await client.call_tool("export", {}, meta={"fastmcp": {"version": "1"}})
    # no session, so the transport answers what passes the pre-check with a 400; what counts
    # is that the pinned call was not challenged, and that a real client's call runs
    assert pinned.status_code != 403
    assert modern.data == "my records, v1"  # with Mcp-Name, the pre-check reads the body too
    assert newest.status_code == 403
    assert 'scope="crm:admin"' in newest.headers["www-authenticate"]


class AllowsWriters:
    """Allows `tools/call::save_contact` to a principal holding crm:write; records questions."""

    def __init__(self) -> None:
        self.actions: list[tuple[str, str]] = []

    async def check(self, principal: Any, items: Any) -> list[Decision]:
        self.actions += [(item.action, item.resource.id) for item in items]
        return [Decision(item, item.action == "tools/call::save_contact"
                         and "crm:write" in principal.attr["scopes"], request_id="fake")
                for item in items]


async def test_an_app_backend_tool_called_by_its_hashed_address_is_asked_about_by_name() -> None:
    """FastMCP apps' backend tools are called as `__<hash>_<name>`; FastMCP resolves that
    address to the tool, and Cerbos is asked about that tool, under its own name."""
    app = FastMCPApp("Dashboard")

    @app.tool()
    def save_contact(name: str) -> str:
        return f"saved {name}"

    mcp = FastMCP("platform")
    mcp.add_provider(app)
    address = hashed_backend_name("Dashboard", "save_contact")
    pdp = AllowsWriters()
    with serve_protected(mcp, pdp, decision_cache_seconds=0) as (url, broker):
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:write"])) as client:
            saved = await client.call_tool(address, {"name": "ada"})
        async with Client(url, auth=broker.tokens.mint(scopes=["crm:read"])) as client:
            with pytest.raises(ToolError, match=rf"^Unknown tool: '{address}'$"):
                await client.call_tool(address, {"name": "ada"})
            with pytest.raises(ToolError, match=r"^Unknown tool: '__0123456789ab_save_contact'$"):
                await client.call_tool("__0123456789ab_save_contact", {"name": "ada"})
    assert saved.data == "saved ada"
    bogus = "__0123456789ab_save_contact"  # a hash no app tool carries: unknown, still asked
    assert [a for a in pdp.actions if a[0].startswith("tools/call")] == [
        ("tools/call::save_contact", "save_contact")] * 2 + [(f"tools/call::{bogus}", bogus)]
