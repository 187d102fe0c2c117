"""What `protect` starts and closes runs with the server's own lifespan, and costs requests
nothing: no extra FastMCP provider, which every tool lookup would fan out to."""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP

from mcp_plugin.protect import ProtectionLifespan, _LifespanProvider


class Feed:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def aclose(self) -> None:
        self.events.append("close")


async def test_it_wraps_the_servers_lifespan_without_a_provider() -> None:
    feed = Feed()
    mcp: FastMCP[Any] = FastMCP("t")
    providers = list(mcp.providers)
    ProtectionLifespan(feed=feed, closers=[]).install(mcp)  # type: ignore[arg-type]
    assert list(mcp.providers) == providers
    async with mcp._lifespan_manager():
        assert feed.events == ["start"]
    assert feed.events == ["start", "close"]


async def test_without_a_lifespan_attribute_it_falls_back_to_a_provider() -> None:
    feed, closed = Feed(), []

    async def close() -> None:
        closed.append(True)

    mcp: FastMCP[Any] = FastMCP("t")
    del mcp._lifespan  # a FastMCP that no longer has it
    ProtectionLifespan(feed=feed, closers=[close]).install(mcp)  # type: ignore[arg-type]
    provider = next(p for p in mcp.providers if isinstance(p, _LifespanProvider))
    async with provider.lifespan():
        assert feed.events == ["start"]
    assert (feed.events, closed) == (["start", "close"], [True])
