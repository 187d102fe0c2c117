"""Which dev stack the demo talks to: URLs and client secrets, from `.run/` unless overridden.

After `make run` everything the demo needs is in the run directory: the broker's URL (the
config's `issuer`), the dev IdP (the first upstream issuer), the MCP server (the first
resource), the audiences users sign in for, the agents' auth methods (broker.yaml) and the
agents' plaintext secrets (dev-secrets.json). The YAML is read as plain data, not through
`load_settings`: the demo is a client of the stack, and must not need the broker's own
secrets (the console's, which live in the environment of the broker process only).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.client import AuthMethod
from broker.dev.config import RESEARCH_AGENT, SUMMARIZER_AGENT
from broker.dev.layout import DevLayout

RUN_FIRST = "Run `make run` first (in another terminal), then `make demo`."
PROBE_TIMEOUT_S = 2.0
SECRET_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")


class StackNotReady(Exception):
    """The dev stack is not set up or not running; the message says what to do."""


@dataclass(frozen=True)
class DemoTarget:
    broker: str
    mcp: str
    idp: str
    host_client: str
    """The client_id users sign in with for agents: the audience of subject tokens."""
    admin_audience: str | None
    """The client_id an admin signs in with for the admin API (`admin.audiences`)."""
    secrets: dict[str, str]
    auth_methods: dict[str, AuthMethod]
    run_dir: Path

    def secret(self, client_id: str) -> str:
        try:
            return self.secrets[client_id]
        except KeyError:
            raise StackNotReady(f"the secret of {client_id} is not in "
                                f"{self.run_dir / 'dev-secrets.json'}: delete "
                                f"{self.run_dir / 'broker.yaml'} and restart `make run` to "
                                "generate new dev secrets") from None


def _first(items: Any, key: str) -> Any:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0].get(key)
    return None


def resolve_target(run_dir: Path, *, broker: str | None = None, mcp: str | None = None,
                   idp: str | None = None) -> DemoTarget:
    """URLs from the options, else from `<run_dir>/broker.yaml`, else the contract's ports."""
    layout = DevLayout.create(Path.cwd(), run_dir=run_dir)
    config_file, secrets_file = layout.config_file, layout.secrets_file
    if not config_file.is_file() or not secrets_file.is_file():
        raise StackNotReady(f"no dev stack in {run_dir} ({config_file.name} and "
                            f"{secrets_file.name} are made by the first `make run`). {RUN_FIRST}")
    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        secrets = json.loads(secrets_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise StackNotReady(f"cannot read the dev stack's files in {run_dir}: {exc}") from None
    if not isinstance(config, dict) or not isinstance(secrets, dict):
        raise StackNotReady(f"{config_file} or {secrets_file} is not a mapping; delete them "
                            "and restart `make run`")
    upstream, resources = config.get("upstream_issuers"), config.get("resources")
    audiences = _first(upstream, "audiences") or ["agent-host"]
    admin = config.get("admin") if isinstance(config.get("admin"), dict) else {}
    admin_audiences = admin.get("audiences") if isinstance(admin, dict) else None
    methods: dict[str, AuthMethod] = {}
    for agent in config.get("agents") or []:
        auth = agent.get("auth") if isinstance(agent, dict) else None
        # The dev agents use secrets; anything else is left to the broker to refuse clearly.
        if isinstance(auth, dict) and auth.get("method") in SECRET_METHODS:
            methods[str(agent.get("client_id"))] = auth["method"]
    return DemoTarget(
        broker=(broker or config.get("issuer") or layout.broker_url).rstrip("/"),
        mcp=mcp or _first(resources, "uri") or layout.mcp_url,
        idp=(idp or _first(upstream, "issuer") or layout.idp_url).rstrip("/"),
        host_client=str(audiences[0]),
        admin_audience=str(admin_audiences[0]) if admin_audiences else None,
        secrets={str(k): v for k, v in secrets.items() if isinstance(v, str)},
        auth_methods={k: methods.get(k) or "client_secret_basic"
                      for k in (RESEARCH_AGENT, SUMMARIZER_AGENT)},
        run_dir=run_dir,
    )


def protected_resource_metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path."""
    scheme, _, rest = resource.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}/.well-known/oauth-protected-resource{slash}{path}".rstrip("/")


async def check_running(target: DemoTarget, http: httpx.AsyncClient) -> None:
    """Raise StackNotReady naming every service that does not answer as it should."""
    probes = {
        "broker": f"{target.broker}/readyz",
        "demo MCP server": protected_resource_metadata_url(target.mcp),
        "dev IdP": f"{target.idp}/.well-known/openid-configuration",
    }

    async def answers(url: str) -> bool:
        try:
            response = await http.get(url, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    results = await asyncio.gather(*(answers(url) for url in probes.values()))
    down = [f"{name} ({url})" for (name, url), ok in zip(probes.items(), results, strict=True)
            if not ok]
    if down:
        raise StackNotReady("the dev stack is not running: nothing (ready) answers at "
                            + ", ".join(down) + f". {RUN_FIRST}")
