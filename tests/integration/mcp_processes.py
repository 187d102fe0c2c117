"""Demo CRM MCP servers as separate OS processes, each with its own revocation feed."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.integration.conftest import CRM
from tests.support.mcp import initialize_status
from tests.support.services import ManagedProcess, free_port


class McpServerProcess(ManagedProcess):
    """`python -m agent_broker_demo.crm_server` for resource CRM on a free port."""

    def __init__(self, work_dir: Path, *, broker: str, cerbos: str, redis_url: str,
                 prefix: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "agent_broker_demo.crm_server", "--broker", broker,
                "--resource", CRM, "--cerbos", cerbos, "--redis-url", redis_url,
                "--redis-key-prefix", prefix, "--port", str(self.port)]
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
