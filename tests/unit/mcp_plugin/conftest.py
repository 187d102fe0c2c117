"""Shared pieces for mcp_plugin unit tests: a pinned clock, a fake broker, a verifier, and
`serve_protected` for a server of the test's own protected and served over loopback HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastmcp import FastMCP

from mcp_plugin import (
    BrokerKeys,
    BrokerTokenVerifier,
    CheckItem,
    Decision,
    Principal,
    StaticRevocations,
    protect,
)
from mcp_plugin.testing import Endpoint, FakeBroker

NOW = 1_800_000_000
ISSUER = "http://broker.test"
RESOURCE = "http://127.0.0.1:8401/mcp"


class ScriptedPDP:
    """Allows an item when the principal holds every `scope:` tag of it; records questions."""

    def __init__(self) -> None:
        self.calls: list[tuple[Principal, list[CheckItem]]] = []

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        self.calls.append((principal, list(items)))
        return [Decision(item, self.allows(principal, item), request_id="fake") for item in items]

    @staticmethod
    def allows(principal: Principal, item: CheckItem) -> bool:
        tags = item.resource.attr.get("tags", [])
        needed = {t.removeprefix("scope:") for t in tags if t.startswith("scope:")}
        if not needed or "support" in principal.roles:
            return False
        arguments = item.resource.attr.get("arguments") or {}
        if "to" in arguments and not str(arguments["to"]).endswith("@example.com"):
            return False
        return needed <= set(principal.attr["scopes"])


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def broker() -> FakeBroker:
    fake = FakeBroker(ISSUER, audience=RESOURCE)
    fake.tokens.clock = lambda: NOW
    return fake


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def revocations() -> StaticRevocations:
    return StaticRevocations()


@pytest.fixture
def make_verifier(
    broker: FakeBroker, monotonic: Monotonic, revocations: StaticRevocations
) -> Callable[..., BrokerTokenVerifier]:
    def make(now: float = NOW, **kwargs: object) -> BrokerTokenVerifier:
        keys = BrokerKeys(ISSUER, http_client=broker.http_client(), monotonic=monotonic)
        return BrokerTokenVerifier(
            broker=ISSUER, resource=RESOURCE, revocations=revocations, keys=keys,
            clock=lambda: now, **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def verifier(make_verifier: Callable[..., BrokerTokenVerifier]) -> BrokerTokenVerifier:
    return make_verifier()


@contextlib.contextmanager
def serve_protected(mcp: FastMCP[Any], cerbos: Any, **options: Any
                    ) -> Iterator[tuple[str, FakeBroker]]:
    """`protect(mcp, ...)` for a fresh loopback endpoint and a fake broker, served until the
    block ends; yields (the MCP URL, the broker that mints its tokens)."""
    endpoint = Endpoint()
    broker = FakeBroker(audience=endpoint.url)
    try:
        protect(mcp, broker=broker.issuer, resource=endpoint.url, cerbos=cerbos,
                http_client=broker.http_client(), **options)
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            yield endpoint.url, broker
    finally:
        endpoint.close()
