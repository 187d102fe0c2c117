"""Shared pieces for mcp_plugin unit tests: a pinned clock, a fake broker, a verifier."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcp_plugin import BrokerKeys, BrokerTokenVerifier, StaticRevocations
from mcp_plugin.testing import FakeBroker

NOW = 1_800_000_000
ISSUER = "http://broker.test"
RESOURCE = "http://127.0.0.1:8401/mcp"


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
