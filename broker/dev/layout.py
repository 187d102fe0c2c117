"""Where the dev stack lives: its ports (contract §2) and its files under the run directory."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DevPorts:
    """The local ports of the dev stack; the defaults are the contract's (§2)."""

    broker: int = 8400
    mcp: int = 8401
    idp: int = 8402
    cerbos_http: int = 3592
    cerbos_grpc: int = 3593
    redis: int = 6380

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        for f in fields(self):
            port = getattr(self, f.name)
            if not 1 <= port <= 65535:
                raise ValueError(f"{f.name} port {port} is not between 1 and 65535")
        if len(set(values)) != len(values):
            raise ValueError(f"the dev stack's ports must all differ: {self}")

    def shifted(self, offset: int) -> DevPorts:
        """Every port moved by `offset` (`agent-broker dev --port-offset`): a second stack, or
        a test's, beside one on the contract's ports. ValueError when one leaves 1..65535."""
        return DevPorts(*(getattr(self, f.name) + offset for f in fields(self)))

    def owners(self) -> dict[int, str]:
        """Port -> the service that listens there (for messages)."""
        return {
            self.redis: "redis", self.cerbos_http: "cerbos (HTTP)",
            self.cerbos_grpc: "cerbos (gRPC)", self.idp: "dev IdP", self.broker: "broker",
            self.mcp: "demo MCP server",
        }  # fmt: skip


@dataclass(frozen=True)
class DevLayout:
    """Paths and URLs of one dev stack: `repo_root` holds the sources, `run_dir` the state."""

    repo_root: Path
    run_dir: Path
    ports: DevPorts

    @classmethod
    def create(cls, repo_root: Path, *, run_dir: Path | None = None,
               ports: DevPorts | None = None) -> DevLayout:
        root = repo_root.resolve()
        return cls(root, (run_dir or root / ".run").resolve(), ports or DevPorts())

    # --- files -------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.run_dir / "broker.yaml"

    @property
    def secrets_file(self) -> Path:
        return self.run_dir / "dev-secrets.json"

    @property
    def keys_file(self) -> Path:
        return self.run_dir / "keys.json"

    @property
    def redis_dir(self) -> Path:
        return self.run_dir / "redis"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "dev.pid"

    @property
    def config_template(self) -> Path:
        return self.repo_root / "deploy" / "dev" / "broker.yaml"

    @property
    def cerbos_config(self) -> Path:
        return self.repo_root / "deploy" / "cerbos" / "config.yaml"

    @property
    def policies_dir(self) -> Path:
        return self.repo_root / "policies"

    def shown(self, path: Path) -> str:
        """`path` as a newcomer would type it from the repository root."""
        try:
            return str(path.relative_to(self.repo_root))
        except ValueError:
            return str(path)

    def python(self) -> str:
        """The interpreter running us, as typed from the repository root when it is inside."""
        exe = Path(os.path.abspath(sys.executable))  # not resolved: keep the venv's path
        try:
            return str(exe.relative_to(self.repo_root))
        except ValueError:
            return str(exe)

    # --- URLs --------------------------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.broker}"

    @property
    def mcp_base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.mcp}"

    @property
    def mcp_url(self) -> str:
        return f"{self.mcp_base_url}/mcp"

    @property
    def idp_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.idp}"

    @property
    def cerbos_http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.cerbos_http}"

    @property
    def cerbos_grpc_address(self) -> str:
        return f"{LOOPBACK}:{self.ports.cerbos_grpc}"

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.ports.redis}/0"
