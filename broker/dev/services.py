"""The dev stack's services: how each one is started and how we know it is ready."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from broker.dev.layout import LOOPBACK, DevLayout
from broker.dev.stack import Probe, ServiceSpec, StartupError

CRM_MODULE = "agent_broker_demo.crm_server"
UNBUFFERED = {"PYTHONUNBUFFERED": "1"}

# The dev IdP's users: sub -> claims (PUT /users/<sub> replaces all of a user's claims).
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"roles": ["sales_rep"], "email": "alice@example.com", "email_verified": True},
    "bob": {"roles": ["support"], "email": "bob@example.com"},
    "carol": {"roles": ["crm_admin"], "email": "carol@example.com", "email_verified": True},
    "dave": {"roles": ["sales_manager"], "email": "dave@example.com", "email_verified": True},
    # The broker's administrator (policies/broker_admin.yaml): signs in to the web console.
    "erin": {"roles": ["admin"], "email": "erin@example.com", "email_verified": True},
}


def http_ok(http: httpx.AsyncClient, url: str) -> Probe:
    """Ready when GET `url` answers 200."""
    async def probe() -> bool:
        try:
            return (await http.get(url)).status_code == 200
        except httpx.HTTPError:
            return False
    return probe


def http_answers(http: httpx.AsyncClient, url: str) -> Probe:
    """Ready when the server answers GET `url` at all (any status: it speaks HTTP)."""
    async def probe() -> bool:
        try:
            await http.get(url)
        except httpx.HTTPError:
            return False
        return True
    return probe


def redis_ping(port: int) -> Probe:
    """Ready when PING answers +PONG (not -LOADING while the AOF is replayed)."""
    async def probe() -> bool:
        try:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        finally:
            writer.close()
    return probe


def redis_spec(layout: DevLayout, binary: Path) -> ServiceSpec:
    layout.redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [
        str(binary), "--port", str(layout.ports.redis), "--bind", LOOPBACK,
        "--dir", str(layout.redis_dir), "--save", "",
        # Revocations survive a restart (contract §7): every write goes to the AOF,
        # fsynced each second.
        "--appendonly", "yes", "--appendfsync", "everysec",
        "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip
    return ServiceSpec("redis", argv, redis_ping(layout.ports.redis), layout.repo_root,
                       color="red")


def cerbos_spec(layout: DevLayout, binary: Path, http: httpx.AsyncClient) -> ServiceSpec:
    argv = [
        str(binary), "server", f"--config={layout.cerbos_config}",
        # The checked-in config names the contract's ports and a relative policies/;
        # pin both so the same file serves a stack on other ports or another cwd.
        f"--set=server.httpListenAddr={LOOPBACK}:{layout.ports.cerbos_http}",
        f"--set=server.grpcListenAddr={layout.cerbos_grpc_address}",
        f"--set=storage.disk.directory={layout.policies_dir}",
    ]
    probe = http_ok(http, f"{layout.cerbos_http_url}/_cerbos/health")
    return ServiceSpec("cerbos", argv, probe, layout.repo_root, color="magenta",
                       env={"CERBOS_NO_TELEMETRY": "1"})


def idp_spec(layout: DevLayout, http: httpx.AsyncClient) -> ServiceSpec:
    argv = [sys.executable, "-m", "oidc_provider_mock", "--host", LOOPBACK,
            "--port", str(layout.ports.idp)]
    probe = http_ok(http, f"{layout.idp_url}/.well-known/openid-configuration")
    return ServiceSpec("idp", argv, probe, layout.repo_root, color="yellow", env=UNBUFFERED)


def broker_command() -> list[str]:
    """The `agent-broker` console script beside our interpreter, else the same via -c."""
    script = Path(sys.executable).parent / "agent-broker"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from broker.cli import app; app()"]


def broker_spec(layout: DevLayout, http: httpx.AsyncClient,
                secrets_env: dict[str, str] | None = None) -> ServiceSpec:
    """`secrets_env`: the broker's own secrets (the console's), never put in its YAML."""
    argv = [*broker_command(), "serve", "--config", layout.shown(layout.config_file),
            "--host", LOOPBACK, "--port", str(layout.ports.broker)]
    return ServiceSpec("broker", argv, http_ok(http, f"{layout.broker_url}/readyz"),
                       layout.repo_root, color="cyan", env={**UNBUFFERED, **(secrets_env or {})})


def _crm_env(layout: DevLayout) -> dict[str, str]:
    # The repository root on the path: a package added after `pip install -e .` is not in the
    # editable install's mapping until the next install.
    path = os.pathsep.join(p for p in (str(layout.repo_root), os.environ.get("PYTHONPATH"))
                           if p)
    return {**UNBUFFERED, "PYTHONPATH": path,
            "AGENT_BROKER_DEV_SECRETS": str(layout.secrets_file)}


def crm_spec(layout: DevLayout, http: httpx.AsyncClient) -> ServiceSpec:
    argv = [sys.executable, "-m", CRM_MODULE, "--broker", layout.broker_url,
            "--resource", layout.mcp_url, "--cerbos", layout.cerbos_grpc_address,
            "--redis-url", layout.redis_url, "--host", LOOPBACK, "--port", str(layout.ports.mcp)]
    metadata = f"{layout.mcp_base_url}/.well-known/oauth-protected-resource/mcp"
    return ServiceSpec("crm", argv, http_answers(http, metadata), layout.repo_root,
                       color="green", env=_crm_env(layout))


async def check_crm_available(layout: DevLayout) -> bool:
    """True if the demo MCP server's module imports where it will run (same cwd and env)."""
    code = f"import importlib.util as u; raise SystemExit(u.find_spec({CRM_MODULE!r}) is None)"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=layout.repo_root, env={**os.environ, **_crm_env(layout)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait() == 0


async def seed_users(http: httpx.AsyncClient, idp_url: str) -> None:
    """Give the dev IdP its demo users (it keeps them in memory only)."""
    for sub, claims in DEMO_USERS.items():
        try:
            response = await http.put(f"{idp_url}/users/{sub}", json=claims)
        except httpx.HTTPError as exc:
            raise StartupError(f"could not configure the dev IdP's user {sub}: {exc}") from None
        if response.status_code != 204:
            raise StartupError(f"could not configure the dev IdP's user {sub}: "
                               f"{response.status_code} {response.text[:200]}")
