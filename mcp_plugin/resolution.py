"""Which component FastMCP will run, so that Cerbos is asked about exactly that one.

- `requested_version`: the version a request pins in `_meta.fastmcp.version` (versions of one
  tool can carry different tags).
- `ToolLookup`: FastMCP's own tool lookup, remembered for as long as decisions are; an app's
  backend tool called by its hashed address (`__<hash>_<name>`) is found as FastMCP finds it,
  so Cerbos is asked about that tool, by its name.
- `completion_reference`: what a `completion/complete` request refers to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.providers.addressing import parse_hashed_backend_name
from fastmcp.tools.base import Tool
from fastmcp.utilities.versions import VersionSpec
from pydantic import BaseModel

from mcp_plugin.decision_cache import ExpiringCache


def requested_version(meta: Mapping[str, Any] | None) -> VersionSpec | None:
    """The version a request pins, read as FastMCP reads it before running that version: a
    string is that version; a mapping is a range (FastMCP's own programmatic calls)."""
    fastmcp_meta = (meta or {}).get("fastmcp")
    version = fastmcp_meta.get("version") if isinstance(fastmcp_meta, Mapping) else None
    if isinstance(version, str):
        return VersionSpec(eq=version)
    if isinstance(version, Mapping):
        bounds = {k: str(version[k]) for k in ("eq", "gte", "lt") if version.get(k) is not None}
        return VersionSpec(**bounds) if bounds else None
    return None


class ToolLookup:
    """Tools by name and version, as FastMCP's `get_tool` finds them, remembered `ttl` seconds
    (the decision cache's time; 0 remembers nothing).

    FastMCP's `get_tool` fans out over its providers in a task group on every lookup, and it
    looks the tool up again itself before running it: remembering it here spared a
    `tools/call` about a tenth of its CPU (docs/performance.md). A remembered tool can be out
    of date for that long, the trade the decision cache makes for policy edits: the question
    asked is then about its earlier tags and annotations, and a tool removed since, or hidden
    from this session, is still refused, as unknown, by FastMCP's own lookup before it runs."""

    def __init__(self, ttl: float) -> None:
        self._tools = ExpiringCache[Tool](ttl)

    async def find(self, server: FastMCP[Any], name: str,
                   version: VersionSpec | None = None) -> Tool | None:
        key = (name, None if version is None else (version.eq, version.gte, version.lt))
        tool = self._tools.get(key)
        if tool is None:
            tool = await server.get_tool(name, version=version)
            if tool is None and (hashed := parse_hashed_backend_name(name)) is not None:
                # an app's backend tool addressed as `__<hash>_<name>`: FastMCP's own fallback,
                # in its order (and, as FastMCP does, without the version)
                tool = await server.get_tool_by_hash(*hashed)
            if tool is not None:
                self._tools.put(key, tool)  # real tools and versions only: bounded
        return tool


def completion_reference(message: Any) -> tuple[str, str] | None:
    """(`ref/prompt`, name) or (`ref/resource`, URI template) of a `completion/complete`
    request, whether FastMCP hands the middleware its params as a mapping or a model."""
    ref = message.get("ref") if isinstance(message, Mapping) else getattr(message, "ref", None)
    if isinstance(ref, BaseModel):
        ref = ref.model_dump(by_alias=True)
    if not isinstance(ref, Mapping):
        return None
    kind = str(ref.get("type"))
    return kind, str(ref.get("name") if kind == "ref/prompt" else ref.get("uri"))
