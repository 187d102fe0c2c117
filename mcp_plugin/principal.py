"""What Cerbos sees (contract §6): the principal from token claims, resources from components.

Pure: plain values in, plain values out. The middleware extracts names, tags and annotations
from FastMCP components; the PDP adapter turns these values into protobufs.

    principal {id: sub, roles: token roles + "user",
               attr: {scopes, agent: client_id, actors: [current, ..., first], session, depth}}
    resource  {kind: <configurable, default mcp_server>, id: tool name | URI | prompt name,
               attr: {tags, annotations, arguments (calls and prompt gets only), ...}}
    action    "<operation>::<name>", e.g. tools/call::send_email (as in cerbos-fastmcp)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from mcp_plugin.claims import AgentClaims, parse_claims

USER_ROLE = "user"
"""Added to every principal: an authenticated user, whatever the IdP said about roles."""

DEFAULT_RESOURCE_KIND = "mcp_server"

TOOLS_LIST = "tools/list"
TOOLS_CALL = "tools/call"
RESOURCES_LIST = "resources/list"
RESOURCES_READ = "resources/read"
PROMPTS_LIST = "prompts/list"
PROMPTS_GET = "prompts/get"


def canonical_json(value: object) -> str | None:
    """One spelling per value (sorted keys), or None if JSON cannot represent it exactly:
    a lossy spelling (`default=str`) could make two different questions one."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Principal:
    id: str
    roles: tuple[str, ...]
    attr: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def canonical(self) -> str | None:
        """The whole principal in one canonical spelling (the decision cache's key), written
        once per principal: the principal of a token is remembered with the token. Never
        mutate `attr` after this has been read."""
        return canonical_json([self.id, list(self.roles), self.attr])


@dataclass(frozen=True, slots=True)
class ResourceRef:
    kind: str
    id: str
    attr: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One question for the PDP: may the principal do `action` on `resource`?"""

    resource: ResourceRef
    action: str


def action_name(operation: str, name: str) -> str:
    """`tools/call` + `send_email` -> `tools/call::send_email` (cerbos-fastmcp's spelling)."""
    return f"{operation}::{name}"


def build_principal(
    claims: AgentClaims | Mapping[str, Any], *, extra_scopes: Iterable[str] = ()
) -> Principal:
    """The Cerbos principal of a verified agent token.

    `extra_scopes` answers "would this be allowed if the token also had these scopes?",
    which is how a step-up hint is computed; it is never used to grant anything.
    Raises ClaimsError when given a raw mapping that is not a valid agent claim set.
    """
    parsed = claims if isinstance(claims, AgentClaims) else parse_claims(claims)
    scopes = list(dict.fromkeys([*parsed.scopes, *extra_scopes]))
    return Principal(
        id=parsed.subject,
        roles=tuple(dict.fromkeys([*parsed.roles, USER_ROLE])),
        attr={
            "scopes": scopes,
            "agent": parsed.client_id,
            "actors": list(parsed.actors),
            "session": parsed.session,
            "depth": parsed.depth,
        },
    )


def build_component_attr(
    *,
    tags: Iterable[str],
    annotations: Mapping[str, Any] | None = None,
    arguments: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resource attributes: sorted tags, annotations without unset hints, arguments if any."""
    attr: dict[str, Any] = dict(extra or {})
    attr["tags"] = sorted(tags)
    if annotations is not None:
        attr["annotations"] = {k: v for k, v in annotations.items() if v is not None}
    if arguments is not None:
        attr["arguments"] = dict(arguments)
    return attr


def build_tool_resource(
    kind: str,
    name: str,
    *,
    tags: Iterable[str],
    annotations: Mapping[str, Any] | None,
    arguments: Mapping[str, Any] | None = None,
) -> ResourceRef:
    """A tool; `tool_name` is kept for policies written for cerbos-fastmcp."""
    attr = build_component_attr(
        tags=tags, annotations=annotations, arguments=arguments, extra={"tool_name": name}
    )
    return ResourceRef(kind=kind, id=name, attr=attr)


def build_uri_resource(
    kind: str,
    uri: str,
    *,
    tags: Iterable[str],
    annotations: Mapping[str, Any] | None = None,
    uri_template: str | None = None,
) -> ResourceRef:
    """A resource or a resource template; a read through a template names the concrete URI."""
    extra: dict[str, Any] = {"uri": uri}
    if uri_template is not None:
        extra["uri_template"] = uri_template
    attr = build_component_attr(tags=tags, annotations=annotations, extra=extra)
    return ResourceRef(kind=kind, id=uri, attr=attr)


def build_prompt_resource(
    kind: str,
    name: str,
    *,
    tags: Iterable[str],
    arguments: Mapping[str, Any] | None = None,
) -> ResourceRef:
    attr = build_component_attr(tags=tags, arguments=arguments, extra={"prompt_name": name})
    return ResourceRef(kind=kind, id=name, attr=attr)


def scopes_from_tags(tags: Iterable[str], prefix: str = "scope:") -> list[str]:
    """Scopes a component declares through tags such as `scope:crm:write` (for step-up hints)."""
    return sorted({t[len(prefix) :] for t in tags if t.startswith(prefix) and len(t) > len(prefix)})
