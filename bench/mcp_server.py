"""The MCP servers the comparison measures run, one OS process per variant:
`python -m bench.mcp_server --variant V --port P --broker URL --cerbos ADDR ...`.

Variants, on the same tools, the same Cerbos, policies and broker tokens:

- `plain`: FastMCP with no auth at all, the floor.
- `plugin`: `mcp_plugin.protect(...)`, exactly as the demo CRM does it (revocation feed on
  Redis included, decision log at INFO, the default 1 s decision cache).
- `plugin-uncached`: the same with `decision_cache_seconds=0`: Cerbos is asked every time,
  which is what a question never asked before costs (and what the list measure judges).
- `authenticated`: FastMCP's own `JWTVerifier` on the broker's JWKS and nothing else: what any
  server with authentication pays in FastMCP (per-client session state is looked up on every
  tool lookup and listing once a request carries an identity), without authorization.
- `cerbos-fastmcp`: cerbos-fastmcp 0.1.1 (through `bench.cerbos_fastmcp_shim`), with
  FastMCP's own `JWTVerifier` on the broker's JWKS as its authentication (it has none of its
  own) and the principal builder its README shows, filled with the attributes our policies
  read (`policies/_schemas/mcp_principal.json`).

Each process serves two tool sets, two FastMCP servers protected alike, on one uvicorn
server (a process start costs a second or two of both cores, and the tool-call and
tools/list measures share these): `crm` at /mcp is the demo CRM
(`agent_broker_demo.crm_server.build_server`), resource kind `mcp_server`
(`policies/mcp_server.yaml`); `many` at /many/mcp is 50 generated read tools, resource kind
`bench_tools` (`bench/policies/bench_tools.yaml`: every tool visible with `crm:read`, and the
command-level `tools/list` that cerbos-fastmcp asks first). Both take the broker's tokens for
the demo CRM's resource URI.

Logging is the demo server's (`logging.basicConfig(level=INFO)`), so each variant pays for
whatever its library logs at INFO.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from cerbos.sdk.model import Principal
from fastmcp import FastMCP
from fastmcp.server.auth import AccessToken
from fastmcp.server.auth.providers.jwt import JWTVerifier
from mcp_types import ToolAnnotations
from starlette.applications import Starlette
from starlette.routing import Mount

from agent_broker_demo.crm_server import build_server
from mcp_plugin import protect
from tests.integration.conftest import CRM
from tests.support.services import ManagedProcess, free_port

Variant = Literal["plain", "authenticated", "plugin", "plugin-uncached", "cerbos-fastmcp"]
VARIANTS: tuple[Variant, ...] = ("plain", "authenticated", "plugin", "plugin-uncached",
                                 "cerbos-fastmcp")
ToolSet = Literal["crm", "many"]
MANY_TOOLS = 50
KINDS: dict[ToolSet, str] = {"crm": "mcp_server", "many": "bench_tools"}
PATHS: dict[ToolSet, str] = {"crm": "/mcp", "many": "/many/mcp"}


def many_tools_server(count: int = MANY_TOOLS) -> FastMCP[Any]:
    """`count` read tools with the shape of a real one (two typed parameters, a docstring,
    tags and annotations), so listing them serializes a realistic catalogue."""
    mcp: FastMCP[Any] = FastMCP("bench-tools")
    annotations = ToolAnnotations(readOnlyHint=True, openWorldHint=False)

    def make(n: int) -> Callable[..., list[dict[str, Any]]]:
        def lookup(query: str, limit: int = 10) -> list[dict[str, Any]]:
            return [{"tool": n, "query": query}][: max(0, limit)]

        lookup.__doc__ = f"Look up records of kind {n} whose name contains `query`."
        return lookup

    for n in range(count):
        mcp.tool(make(n), name=f"lookup_{n:02d}", tags={"crm", "scope:crm:read", "read"},
                 annotations=annotations)
    return mcp


def cerbos_principal(token: AccessToken) -> Principal:
    """cerbos-fastmcp's principal builder, as its README writes one, with our attributes."""
    claims = token.claims
    actors, node = [], claims.get("act")
    while isinstance(node, dict):
        actors.append(str(node.get("sub")))
        node = node.get("act")
    return Principal(
        id=claims["sub"],
        roles={*claims.get("roles", []), "user"},
        attr={"scopes": str(claims.get("scope", "")).split(), "agent": claims.get("client_id"),
              "actors": actors, "session": claims.get("sid"), "depth": len(actors)},
    )


def jwt_verifier(broker: str) -> JWTVerifier:
    return JWTVerifier(jwks_uri=f"{broker}/.well-known/jwks.json", issuer=broker,
                       audience=CRM, algorithm="EdDSA")


def build(variant: Variant, tools: ToolSet, *, broker: str, cerbos: str, redis_url: str,
          prefix: str) -> FastMCP[Any]:
    mcp = build_server() if tools == "crm" else many_tools_server()
    kind = KINDS[tools]
    if variant in ("plugin", "plugin-uncached"):
        protect(mcp, broker=broker, resource=CRM, cerbos=cerbos, redis_url=redis_url,
                revocation_key_prefix=prefix, resource_kind=kind,
                decision_cache_seconds=0 if variant == "plugin-uncached" else 1.0)
    elif variant == "authenticated":
        mcp.auth = jwt_verifier(broker)
    elif variant == "cerbos-fastmcp":
        from bench.cerbos_fastmcp_shim import CerbosFastMCPMiddleware  # only this variant

        mcp.auth = jwt_verifier(broker)
        mcp.add_middleware(CerbosFastMCPMiddleware(cerbos, principal_builder=cerbos_principal,
                                                   resource_kind=kind))
    return mcp


def build_app(variant: Variant, *, broker: str, cerbos: str, redis_url: str,
              prefix: str) -> Starlette:
    """Both tool sets of one variant on one ASGI app, their lifespans run together."""
    apps = {tools: build(variant, tools, broker=broker, cerbos=cerbos, redis_url=redis_url,
                         prefix=prefix).http_app(path="/mcp") for tools in PATHS}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for sub in apps.values():
                await stack.enter_async_context(sub.router.lifespan_context(sub))
            yield

    return Starlette(routes=[Mount("/many", app=apps["many"]), Mount("/", app=apps["crm"])],
                     lifespan=lifespan)


class BenchMcpServer(ManagedProcess):
    """One variant in its own process, on a free port, logging to the measure's work dir."""

    def __init__(self, work_dir: Path, variant: Variant, *, broker: str, cerbos: str,
                 redis_url: str, prefix: str) -> None:
        self.port = free_port()
        self.variant = variant
        argv = [sys.executable, "-m", "bench.mcp_server", "--variant", variant,
                "--port", str(self.port), "--broker", broker, "--cerbos", cerbos,
                "--redis-url", redis_url, "--prefix", prefix]
        super().__init__(f"mcp-{variant}-{self.port}", argv, work_dir, cwd=Path.cwd())

    def path(self, tools: ToolSet) -> str:
        return PATHS[tools]

    def is_ready(self) -> bool:
        try:  # any HTTP answer at all (405 to a GET, 401 without a token): it is serving
            httpx.get(f"http://127.0.0.1:{self.port}/mcp", timeout=1, trust_env=False)
        except httpx.HTTPError:
            return False
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--cerbos", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True, help="the broker's redis_key_prefix")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build_app(args.variant, broker=args.broker, cerbos=args.cerbos,
                    redis_url=args.redis_url, prefix=args.prefix)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", log_config=None)


if __name__ == "__main__":
    main()
