"""Session-wide real services, started lazily (only when a test asks) and stopped at session end.

A missing binary or a service that will not start fails the test that needs it: never a skip,
because in CI a missing Redis or Cerbos is a broken build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.services import (
    REPO_ROOT,
    CerbosService,
    ManagedProcess,
    OidcProviderService,
    RedisService,
    start_cerbos,
    start_oidc_provider,
    start_redis,
)

S = TypeVar("S", bound=ManagedProcess)


def _run(start: Callable[[], S]) -> Iterator[S]:
    problem = ""
    try:
        service = start()
    except RuntimeError as exc:  # a missing binary or a service that would not start
        problem = str(exc)
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's services keep their logs, configs and data files."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_service(services_dir: Path) -> Iterator[RedisService]:
    yield from _run(lambda: start_redis(services_dir / "redis"))


@pytest.fixture(scope="session")
def cerbos_service(services_dir: Path) -> Iterator[CerbosService]:
    yield from _run(lambda: start_cerbos(REPO_ROOT / "policies", services_dir / "cerbos"))


@pytest.fixture(scope="session")
def oidc_provider(services_dir: Path) -> Iterator[OidcProviderService]:
    yield from _run(lambda: start_oidc_provider(services_dir / "oidc"))


@pytest.fixture(scope="session")
def redis_url(redis_service: RedisService) -> str:
    return redis_service.url


@pytest.fixture(scope="session")
def cerbos_address(cerbos_service: CerbosService) -> str:
    """The gRPC address, host:port."""
    return cerbos_service.grpc_address


@pytest.fixture(scope="session")
def oidc_issuer(oidc_provider: OidcProviderService) -> str:
    return oidc_provider.issuer
