"""The FastAPI application factory: routes, error rendering, and the services lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from broker.config import BrokerSettings
from broker.http import admin_routes, discovery_routes, oauth_routes
from broker.http.console import COOKIE_NAME, console_router
from broker.http.errors import install_error_handlers
from broker.http.services import build_services
from broker.ports import Clock


def create_app(settings: BrokerSettings, *, clock: Clock = time.time) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built here, on the server's event loop: gRPC and Redis connections bind to it.
        services = build_services(settings, clock)
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()

    app = FastAPI(title="agent-broker", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.include_router(oauth_routes.router)
    app.include_router(discovery_routes.router)
    app.include_router(admin_routes.router)
    if settings.admin.console is not None:
        _add_console(app, settings)
    return app


def _add_console(app: FastAPI, settings: BrokerSettings) -> None:
    """The web console: its pages beside the JSON admin API, and its signed session cookie."""
    console = settings.admin.console
    assert console is not None
    secure = console.secure_cookies
    if secure is None:
        secure = urlsplit(settings.issuer).scheme == "https"
    # The cookie goes only to /admin (never to the OAuth endpoints); lax keeps it off
    # cross-site POSTs, and the CSRF header guards the rest.
    app.add_middleware(SessionMiddleware, secret_key=console.session_secret.get_secret_value(),
                       session_cookie=COOKIE_NAME, max_age=console.session_max_age_seconds,
                       path="/admin", same_site="lax", https_only=secure)
    app.include_router(console_router(settings))
