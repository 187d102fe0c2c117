"""Brokers and demo CRM MCP servers as separate OS processes, alone or as one deployment.

A `BrokerProcess` is `agent-broker serve` (as deployed); an `McpServerProcess` the demo CRM
with its own revocation feed. A `Fleet` is several of each working as one deployment: the
brokers share the issuer, the signing keys file, Redis and its key prefix (as replicas behind
a load balancer would), and every MCP server trusts that issuer.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.config import BrokerSettings
from broker.keys import Keyring, generate_key, write_keys_file
from tests.integration.conftest import CRM, broker_config
from tests.integration.revocation_support import ADMIN_AUDIENCE
from tests.support.mcp import initialize_status
from tests.support.services import REPO_ROOT, ManagedProcess, free_port


class BrokerProcess(ManagedProcess):
    """`agent-broker serve` on a free port, with the integration tests' configuration (plus an
    admin audience); `config` overrides it. `issuer` and `keys_file` default to this broker's
    own; with `module`, `python -m <module>` serves instead (same --config/--port options)."""

    def __init__(self, work_dir: Path, *, redis_url: str, cerbos_address: str,
                 oidc_issuer: str, prefix: str = "ab:", issuer: str | None = None,
                 keys_file: Path | None = None, module: str | None = None,
                 **config: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer or self.url
        self.prefix = prefix
        work_dir.mkdir(parents=True, exist_ok=True)
        settings = broker_config(
            self.issuer, redis_url=redis_url, cerbos_address=cerbos_address,
            oidc_issuer=oidc_issuer, keys_file=keys_file or work_dir / f"keys-{self.port}.json",
            redis_key_prefix=prefix, admin={"audiences": [ADMIN_AUDIENCE]}, **config,
        )
        BrokerSettings(**settings)  # fail here, with pydantic's message, not in the child's log
        self.config_path = work_dir / f"broker-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        entry = ["-m", module] if module else ["-c", "from broker.cli import app; app()", "serve"]
        argv = [sys.executable, *entry, "--config", str(self.config_path),
                "--port", str(self.port), "--log-level", "warning"]
        super().__init__(f"broker-{self.port}", argv, work_dir, cwd=REPO_ROOT)

    def is_ready(self) -> bool:
        try:  # /readyz: Redis and Cerbos answer too, not only the process
            return httpx.get(f"{self.url}/readyz", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False


class McpServerProcess(ManagedProcess):
    """`python -m agent_broker_demo.crm_server` for resource CRM on a free port."""

    def __init__(self, work_dir: Path, *, broker: str, cerbos: str, redis_url: str,
                 prefix: str, staleness_seconds: float | None = None) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "agent_broker_demo.crm_server", "--broker", broker,
                "--resource", CRM, "--cerbos", cerbos, "--redis-url", redis_url,
                "--redis-key-prefix", prefix, "--port", str(self.port)]
        if staleness_seconds is not None:
            argv += ["--revocation-staleness-seconds", str(staleness_seconds)]
        super().__init__(f"crm-{self.port}", argv, work_dir, cwd=Path.cwd())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def is_ready(self) -> bool:
        try:
            probe = httpx.get(f"http://127.0.0.1:{self.port}/.well-known/oauth-protected-resource"
                              "/mcp", timeout=1, trust_env=False)
        except httpx.HTTPError:
            return False
        return probe.status_code == 200

    def status(self, token: str, http: httpx.Client | None = None) -> int:
        """The HTTP status of an MCP initialize with this bearer token (200, or 401)."""
        return initialize_status(self.url, token, http)


@dataclass
class Fleet:
    """Brokers and MCP servers (not started) working as one deployment.

    The issuer is the first broker's URL: MCP servers discover the signing keys there, and a
    token minted by any broker verifies at every server only because the keys file is shared.
    """

    brokers: list[BrokerProcess]
    servers: list[McpServerProcess]

    @classmethod
    def build(cls, work_dir: Path, *, redis_url: str, cerbos_address: str, oidc_issuer: str,
              prefix: str = "ab:", brokers: int = 2, servers: int = 3,
              staleness_seconds: float | None = None, **config: Any) -> Fleet:
        work_dir.mkdir(parents=True, exist_ok=True)
        keys_file = work_dir / "keys.json"
        # written before any broker starts: brokers starting together would each create one
        write_keys_file(keys_file, Keyring([generate_key("EdDSA", time.time())],
                                           max_token_ttl=0, grace=0))
        made: list[BrokerProcess] = []
        for _ in range(brokers):
            made.append(BrokerProcess(
                work_dir / "brokers", redis_url=redis_url, cerbos_address=cerbos_address,
                oidc_issuer=oidc_issuer, prefix=prefix, keys_file=keys_file,
                issuer=made[0].url if made else None, **config))
        return cls(made, [
            McpServerProcess(work_dir / "mcp", broker=made[0].url, cerbos=cerbos_address,
                             redis_url=redis_url, prefix=prefix,
                             staleness_seconds=staleness_seconds)
            for _ in range(servers)])

    @property
    def issuer(self) -> str:
        return self.brokers[0].issuer

    @property
    def processes(self) -> list[ManagedProcess]:
        return [*self.brokers, *self.servers]
