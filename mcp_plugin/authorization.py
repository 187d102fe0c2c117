"""CerbosAuthorization: every MCP list, call, read and get is decided by Cerbos (contract §6).

A FastMCP `Middleware`. Lists are filtered after `call_next` with ONE batched CheckResources
(chunked and concurrent in the PDP adapter), never one request per item. A call, read or get
is checked before `call_next`, with the tool's arguments among the resource attributes.

A refusal is indistinguishable from an unknown component: the middleware raises FastMCP's own
`NotFoundError`, so the client gets exactly FastMCP's not-found answer ("Unknown tool: 'x'",
"Resource not found: 'uri'", "Unknown prompt: 'x'"), and unknown names are refused the same
way before Cerbos is asked. The one exception is a step-up: when the tool declares scopes
through tags (`scope:crm:write`) that the token lacks, and Cerbos says the same call WOULD be
allowed with them, the error is FastMCP's `InsufficientScopeError` naming those scopes.

`completion/complete` suggests nothing for a prompt or resource template the caller may not
list. No verified agent token, unreadable claims, or no answer from Cerbos: deny, always.

On the modern streamable HTTP transport, the `Mcp-Param-*` header check the mcp SDK makes
before a `tools/call` sees a tool's schema only when the caller may list the tool: see
mcp_plugin/param_headers.py.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import mcp_types as mt
from fastmcp import FastMCP
from fastmcp.exceptions import InsufficientScopeError, NotFoundError
from fastmcp.prompts.base import Prompt, PromptResult
from fastmcp.resources.base import Resource
from fastmcp.resources.template import ResourceTemplate
from fastmcp.server.auth import AccessToken
from fastmcp.server.dependencies import get_access_token
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult
from fastmcp.utilities.versions import VersionSpec
from pydantic import BaseModel

from mcp_plugin.claims import ClaimsError
from mcp_plugin.decision_cache import (
    DEFAULT_MAX_ENTRIES,
    DEFAULT_TTL_SECONDS,
    CachingPolicyPoint,
    DecisionCache,
)
from mcp_plugin.decisions import log_decisions
from mcp_plugin.pdp import (
    DEFAULT_MAX_RESOURCES_PER_REQUEST,
    DEFAULT_TIMEOUT_SECONDS,
    CerbosPolicyPoint,
    Decision,
    PolicyDecisionPoint,
    deny_all,
)
from mcp_plugin.principal import (
    DEFAULT_RESOURCE_KIND,
    PROMPTS_GET,
    PROMPTS_LIST,
    RESOURCES_LIST,
    RESOURCES_READ,
    TOOLS_CALL,
    TOOLS_LIST,
    CheckItem,
    Principal,
    ResourceRef,
    action_name,
    build_principal,
    build_prompt_resource,
    build_tool_resource,
    build_uri_resource,
    scopes_from_tags,
)
from mcp_plugin.resolution import ToolLookup, completion_reference, requested_version

C = TypeVar("C")
NO_TOKEN = "no verified agent token"
COMPLETION = "completion/complete"


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(by_alias=True, exclude_none=True)


class CerbosAuthorization(Middleware):
    """Authorize tools, resources, resource templates and prompts with Cerbos."""

    def __init__(
        self,
        cerbos: str | PolicyDecisionPoint,
        *,
        resource_kind: str = DEFAULT_RESOURCE_KIND,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_resources_per_request: int = DEFAULT_MAX_RESOURCES_PER_REQUEST,
        scope_tag_prefix: str = "scope:",
        decision_cache_seconds: float = DEFAULT_TTL_SECONDS,
        decision_cache_size: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if isinstance(cerbos, str):
            cerbos = CerbosPolicyPoint(
                cerbos, timeout=timeout, max_resources_per_request=max_resources_per_request
            )
        self.pdp: PolicyDecisionPoint = cerbos
        """The PDP itself; questions go through `decisions` (mcp_plugin/decision_cache.py)."""
        self.decisions: PolicyDecisionPoint = (
            CachingPolicyPoint(cerbos, DecisionCache(decision_cache_seconds,
                                                     max_entries=decision_cache_size))
            if decision_cache_seconds > 0 else cerbos
        )
        self.tools = ToolLookup(decision_cache_seconds)
        self.principals = TokenPrincipals()
        self.resource_kind = resource_kind
        self.scope_tag_prefix = scope_tag_prefix

    # -- items: what is asked about each kind of component ---------------------------------

    def tool_item(self, tool: Tool, operation: str, arguments: Mapping[str, Any] | None = None
                  ) -> CheckItem:
        resource = build_tool_resource(
            self.resource_kind, tool.name, tags=tool.tags,
            annotations=_dump(tool.annotations), arguments=arguments,
        )
        return CheckItem(resource, action_name(operation, tool.name))

    def resource_item(self, resource: Resource, operation: str, uri: str | None = None
                      ) -> CheckItem:
        uri = uri or str(resource.uri)
        ref = build_uri_resource(
            self.resource_kind, uri, tags=resource.tags, annotations=_dump(resource.annotations)
        )
        return CheckItem(ref, action_name(operation, uri))

    def template_item(self, template: ResourceTemplate, operation: str, uri: str | None = None
                      ) -> CheckItem:
        uri = uri or template.uri_template
        ref = build_uri_resource(
            self.resource_kind, uri, tags=template.tags,
            annotations=_dump(template.annotations), uri_template=template.uri_template,
        )
        return CheckItem(ref, action_name(operation, uri))

    def prompt_item(self, prompt: Prompt, operation: str,
                    arguments: Mapping[str, Any] | None = None) -> CheckItem:
        ref = build_prompt_resource(
            self.resource_kind, prompt.name, tags=prompt.tags, arguments=arguments
        )
        return CheckItem(ref, action_name(operation, prompt.name))

    # -- decisions -------------------------------------------------------------------------

    async def decide(self, token: AccessToken | None, items: Sequence[CheckItem]
                     ) -> list[Decision]:
        """Decide and log every item; no token or bad claims means deny without asking."""
        principal = self.principals.of(token)
        if principal is None:
            decisions = deny_all(items, NO_TOKEN, None)
        else:
            decisions = await self.decisions.check(principal, items)
        log_decisions(principal, decisions)
        return decisions

    async def _filter(self, components: Sequence[C], item: Callable[[C], CheckItem]) -> list[C]:
        if not components:
            return []
        decisions = await self.decide(get_access_token(), [item(c) for c in components])
        return [c for c, d in zip(components, decisions, strict=True) if d.allowed]

    async def step_up_scopes(self, token: AccessToken, tool: Tool, item: CheckItem) -> list[str]:
        """Scopes that would turn this denied call into an allowed one, or [] if none would.

        Only scopes the tool declares in its tags are tried, and only if Cerbos allows the
        same call for a principal holding them: a caller who could never use the tool learns
        nothing about it.
        """
        missing = [
            s for s in scopes_from_tags(tool.tags, self.scope_tag_prefix)
            if s not in token.scopes
        ]
        if not missing or not token.claims:
            return []
        try:
            principal = build_principal(token.claims, extra_scopes=missing)
        except ClaimsError:
            return []
        decisions = await self.decisions.check(principal, [item])
        log_decisions(principal, decisions, probe="step_up")
        return missing if decisions[0].allowed else []

    def _lacks_declared(self, token: AccessToken, tool: Tool) -> bool:
        return not all(s in token.scopes
                       for s in scopes_from_tags(tool.tags, self.scope_tag_prefix))

    async def lacks_declared_scopes(self, server: FastMCP[Any], token: AccessToken, name: str
                                    ) -> bool:
        """Whether `token` lacks a scope the tool `name` declares in its tags (False for an
        unknown name); a stale tool can only change a hint, never a decision."""
        tool = await self.tools.find(server, name)
        return tool is not None and self._lacks_declared(token, tool)

    async def challenge_scopes(self, server: FastMCP[Any], token: AccessToken, name: str,
                               arguments: Mapping[str, Any] | None,
                               version: VersionSpec | None = None) -> list[str]:
        """For the HTTP layer: scopes to name in a 403 before a tool call runs, or []; about
        the version the call pins, the one FastMCP will run."""
        tool = await self.tools.find(server, name, version)
        if tool is None or not self._lacks_declared(token, tool):
            return []  # nothing more to ask, the middleware decides
        item = self.tool_item(tool, TOOLS_CALL, arguments or {})
        actual, hint = await asyncio.gather(
            self.decide(token, [item]), self.step_up_scopes(token, tool, item)
        )
        return [] if actual[0].allowed else hint

    # -- lists -----------------------------------------------------------------------------

    async def on_list_tools(
        self,
        context: MiddlewareContext[mt.ListToolsRequest],
        call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        tools = await call_next(context)
        return await self._filter(tools, lambda t: self.tool_item(t, TOOLS_LIST))

    async def on_list_resources(
        self,
        context: MiddlewareContext[mt.ListResourcesRequest],
        call_next: CallNext[mt.ListResourcesRequest, Sequence[Resource]],
    ) -> Sequence[Resource]:
        resources = await call_next(context)
        return await self._filter(resources, lambda r: self.resource_item(r, RESOURCES_LIST))

    async def on_list_resource_templates(
        self,
        context: MiddlewareContext[mt.ListResourceTemplatesRequest],
        call_next: CallNext[mt.ListResourceTemplatesRequest, Sequence[ResourceTemplate]],
    ) -> Sequence[ResourceTemplate]:
        templates = await call_next(context)
        return await self._filter(templates, lambda t: self.template_item(t, RESOURCES_LIST))

    async def on_list_prompts(
        self,
        context: MiddlewareContext[mt.ListPromptsRequest],
        call_next: CallNext[mt.ListPromptsRequest, Sequence[Prompt]],
    ) -> Sequence[Prompt]:
        prompts = await call_next(context)
        return await self._filter(prompts, lambda p: self.prompt_item(p, PROMPTS_LIST))

    # -- completion ------------------------------------------------------------------------

    async def on_request(self, context: MiddlewareContext[Any],
                         call_next: CallNext[Any, Any]) -> Any:
        """`completion/complete` suggests values for a prompt's or resource template's
        arguments (customer names, ids...): for one the caller may not list, the answer keeps
        FastMCP's envelope and suggests nothing, as for an unknown reference."""
        if context.method != COMPLETION or await self._may_complete(context):
            return await call_next(context)
        result = await call_next(context)
        if isinstance(result, Mapping):
            return {**result, "completion": {"values": []}}
        if isinstance(result, mt.CompleteResult):
            return result.model_copy(update={"completion": mt.Completion(values=[])})
        return result

    async def _may_complete(self, context: MiddlewareContext[Any]) -> bool:
        reference, server = completion_reference(context.message), _server(context)
        if reference is None or server is None:
            return False
        # FastMCP's own resolution of the reference: the component its handler would complete
        component = await server._completion_target(*reference)
        if isinstance(component, Prompt):
            item = self.prompt_item(component, PROMPTS_LIST)
        elif isinstance(component, ResourceTemplate):
            item = self.template_item(component, RESOURCES_LIST)
        else:
            return component is None  # unknown: FastMCP answers empty itself
        return (await self.decide(get_access_token(), [item]))[0].allowed

    # -- single operations -----------------------------------------------------------------

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        name = context.message.name
        arguments = context.message.arguments or {}
        token = get_access_token()
        server = _server(context)
        version = requested_version(context.message.meta)
        found = await self.tools.find(server, name, version) if server is not None else None
        if found is None:  # asked anyway, so that timing does not tell unknown from denied
            await self.decide(token, [_unknown_item(self.resource_kind, TOOLS_CALL, name)])
            raise NotFoundError(f"Unknown tool: {name!r}")
        tool = found
        item = self.tool_item(tool, TOOLS_CALL, arguments)
        decision = (await self.decide(token, [item]))[0]
        if decision.allowed:
            return await call_next(context)
        missing = await self.step_up_scopes(token, tool, item) if token is not None else []
        if missing:
            raise InsufficientScopeError(
                missing,
                message=(
                    f"Authorization failed for tool '{name}': "
                    f"insufficient scope (required: {', '.join(missing)})"
                ),
            )
        raise NotFoundError(f"Unknown tool: {name!r}")

    async def check_resource_access(
        self, context: MiddlewareContext[mt.ReadResourceRequestParams]
    ) -> None:
        uri = str(context.message.uri)
        server = _server(context)
        version = requested_version(context.message.meta)
        item: CheckItem | None = None
        if server is not None:
            resource = await server.get_resource(uri, version=version)
            if resource is not None:
                item = self.resource_item(resource, RESOURCES_READ, uri)
            elif (template := await server.get_resource_template(uri, version=version)
                  ) is not None:
                item = self.template_item(template, RESOURCES_READ, uri)
        asked = item or _unknown_item(self.resource_kind, RESOURCES_READ, uri)
        decision = (await self.decide(get_access_token(), [asked]))[0]
        if item is None or not decision.allowed:
            raise NotFoundError(f"Unknown resource: {uri!r}")

    async def on_get_prompt(
        self,
        context: MiddlewareContext[mt.GetPromptRequestParams],
        call_next: CallNext[mt.GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        name = context.message.name
        server = _server(context)
        version = requested_version(context.message.meta)
        prompt = await server.get_prompt(name, version=version) if server is not None else None
        if prompt is None:
            item = _unknown_item(self.resource_kind, PROMPTS_GET, name)
        else:
            item = self.prompt_item(prompt, PROMPTS_GET, context.message.arguments or {})
        decision = (await self.decide(get_access_token(), [item]))[0]
        if prompt is None or not decision.allowed:
            raise NotFoundError(f"Unknown prompt: {name!r}")
        return await call_next(context)


def principal_of(token: AccessToken | None) -> Principal | None:
    if token is None or not token.claims:
        return None
    try:
        return build_principal(token.claims)
    except ClaimsError:
        return None


class TokenPrincipals:
    """The principal of each token, built once: an agent presents the same token on many
    requests, and building it (claims parsed, then written canonically for the decision
    cache) was about a third of a cached decision's own cost. Remembered by the token's text and
    used again only for equal claims, so whatever verifier produced the token (one whose
    claims could change for the same text included), the principal is always that of the
    claims at hand. Bounded; oldest dropped first."""

    def __init__(self, max_entries: int = 4_096) -> None:
        self._max = max_entries
        self._known: dict[str, tuple[dict[str, Any], Principal | None]] = {}

    def of(self, token: AccessToken | None) -> Principal | None:
        if token is None or not token.claims:
            return None
        known = self._known.get(token.token)
        if known is not None and known[0] == token.claims:
            return known[1]
        principal = principal_of(token)
        if len(self._known) >= self._max:
            del self._known[next(iter(self._known))]
        self._known[token.token] = (copy.deepcopy(token.claims), principal)  # ours alone
        return principal


def _server(context: MiddlewareContext[Any]) -> FastMCP[Any] | None:
    ctx = context.fastmcp_context
    return ctx.fastmcp if ctx is not None else None


def _unknown_item(kind: str, operation: str, name: str) -> CheckItem:
    """A name nothing answers to. Cerbos is still asked (and the answer ignored), so a refusal
    takes as long whether or not the component exists, and the attempt is logged."""
    return CheckItem(ResourceRef(kind, name, {"tags": []}), action_name(operation, name))
