"""A real headless Chromium (Debian's, driven by Playwright) against a real broker with its
web console, the real dev IdP, Redis and Cerbos, and the demo CRM following revocations.

Chromium is never downloaded (`playwright install` cannot work here): `make setup` installs
Debian's package at /usr/bin/chromium; `CHROMIUM_BIN` may point elsewhere. A missing browser
fails the tests, like a missing Redis or Cerbos (tests/conftest.py): never a skip.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from broker.config import BrokerSettings
from broker.http.app import create_app
from tests.integration.conftest import CRM, Broker, broker_config
from tests.integration.revocation_support import RevocationStack
from tests.support.asgi import serve_in_thread
from tests.support.mcp import served_crm
from tests.support.services import free_port

CONSOLE_CLIENT = "agent-broker-console"
CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that phones home: this machine's network is closed.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 10_000

NewPage = Callable[[], Awaitable[Page]]


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("CHROMIUM_BIN", CHROMIUM)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"Chromium not found at {path}. Run `make setup` (scripts/setup.sh installs "
                    "Debian's chromium), or set CHROMIUM_BIN.", pytrace=False)
    return path


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # type: ignore[attr-defined]
    return report


@pytest.fixture
async def new_page(browser: Browser, request: pytest.FixtureRequest,
                   tmp_path: Path) -> AsyncIterator[NewPage]:
    """Pages in fresh browser contexts (own cookies); screenshots in tmp_path on failure."""
    pages: list[Page] = []

    async def make() -> Page:
        context = await browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        pages.append(page)
        return page

    yield make
    report = getattr(request.node, "report_call", None)
    for i, page in enumerate(pages):
        if report is not None and report.failed:
            await page.screenshot(path=str(tmp_path / f"failure-page{i}.png"), full_page=True)
        await page.context.close()


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                  cerbos_address: str, oidc_issuer: str) -> Iterator[RevocationStack]:
    """A broker with admin API and console; its own Redis key prefix (see revocation_support)."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    console = {"client_id": CONSOLE_CLIENT, "client_secret": "console-secret-0123456789",
               "session_secret": secrets.token_urlsafe(32)}
    settings = BrokerSettings(**broker_config(
        issuer, redis_url=redis_url, cerbos_address=cerbos_address, oidc_issuer=oidc_issuer,
        keys_file=tmp_path_factory.mktemp("console-keys") / "keys.json",
        redis_key_prefix=prefix, admin={"audiences": [CONSOLE_CLIENT], "console": console}))
    with serve_in_thread(create_app(settings), port=port) as url:
        yield RevocationStack(Broker(url, settings), oidc_issuer, prefix)


@pytest.fixture(scope="module")
def crm_url(console_stack: RevocationStack, cerbos_address: str, redis_url: str
            ) -> Iterator[str]:
    """The demo CRM, following the broker's revocations through Redis (RedisRevocationFeed)."""
    with served_crm(broker=console_stack.broker.url, cerbos=cerbos_address, resource=CRM,
                    redis_url=redis_url, revocation_key_prefix=console_stack.prefix) as url:
        yield url
