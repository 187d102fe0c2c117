"""The FastAPI application factory: routes, error rendering, and the services lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from broker.config import BrokerSettings
from broker.http import admin_routes, discovery_routes, oauth_routes
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
    return app
