"""Run things on loopback for tests: a stand-in broker (metadata + JWKS) and ASGI servers.

    with run_broker() as broker:                       # real HTTP on a free port
        endpoint = Endpoint()                          # reserves a free port for the server
        mcp = build_my_server()
        protect(mcp, broker=broker.issuer, resource=endpoint.url, cerbos=CERBOS)
        with endpoint.serve(mcp.http_app(path=endpoint.path)):
            token = broker.tokens.mint(roles=["sales_rep"], scopes=["crm:read"])
            ...  # any MCP client against endpoint.url with "Authorization: Bearer <token>"

Servers run under uvicorn in a thread with their own event loop, so sync and async tests can
use them alike. Ports are bound before the server starts (no race for a "free" port).
`FakeBroker.transport()` serves the same documents without any socket (httpx MockTransport).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from mcp_plugin.jwks import metadata_url
from mcp_plugin.testing.tokens import BrokerTokenFactory, TestKeyPair

STARTUP_TIMEOUT_S = 10.0


class FakeBroker:
    """The broker's discovery side for tests: RFC 8414 metadata and the JWKS of its keys."""

    def __init__(
        self,
        issuer: str = "http://broker.test",
        *,
        keys: Sequence[TestKeyPair] | None = None,
        audience: str | None = None,
    ) -> None:
        self.tokens = BrokerTokenFactory(issuer, keys=keys, audience=audience)
        self.jwks_requests = 0
        self.metadata_requests = 0

    @property
    def issuer(self) -> str:
        return self.tokens.issuer

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/jwks.json"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": f"{self.issuer.rstrip('/')}/oauth2/token",
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        }

    def respond(self, url: str) -> tuple[int, dict[str, Any]]:
        path = httpx.URL(url).path
        if path == httpx.URL(metadata_url(self.issuer)).path:
            self.metadata_requests += 1
            return 200, self.metadata()
        if path == httpx.URL(self.jwks_uri).path:
            self.jwks_requests += 1
            return 200, self.tokens.jwks()
        return 404, {"error": "not_found"}

    def app(self) -> Starlette:
        async def handle(request: Request) -> JSONResponse:
            status, body = self.respond(str(request.url))
            return JSONResponse(body, status_code=status)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET"])])

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            status, body = self.respond(str(request.url))
            return httpx.Response(status, json=body)

        return httpx.MockTransport(handle)

    def http_client(self) -> httpx.AsyncClient:
        """An httpx client that reaches this broker without any network."""
        return httpx.AsyncClient(transport=self.transport())


class Endpoint:
    """A loopback port bound now, to be served later; `url` is the MCP resource URI."""

    def __init__(self, path: str = "/mcp", host: str = "127.0.0.1") -> None:
        self.path = path
        self.host = host
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, 0))
        self.port: int = self.socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    @contextlib.contextmanager
    def serve(self, app: ASGIApp) -> Iterator[Endpoint]:
        """Serve `app` (lifespan included) until the block ends."""
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.socket]}, daemon=True,
            name=f"uvicorn-{self.port}",
        )
        thread.start()
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"server on {self.base_url} did not start")
                time.sleep(0.01)
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=STARTUP_TIMEOUT_S)

    def close(self) -> None:
        self.socket.close()


@contextlib.contextmanager
def run_broker(
    *, keys: Sequence[TestKeyPair] | None = None, audience: str | None = None
) -> Iterator[FakeBroker]:
    """A FakeBroker served over real HTTP on a free loopback port (its issuer is that URL)."""
    endpoint = Endpoint(path="")
    broker = FakeBroker(endpoint.base_url, keys=keys, audience=audience)
    try:
        with endpoint.serve(broker.app()):
            yield broker
    finally:
        endpoint.close()
