"""The local dev stack behind `make run` / `agent-broker dev`.

Redis (AOF), Cerbos (hot-reloaded policies), a dev OIDC provider with demo users, the broker,
and the demo CRM MCP server when it is available, each a supervised child process whose output
is streamed with its name in front. See `run_dev`.
"""

from __future__ import annotations

from broker.dev.layout import DevLayout, DevPorts
from broker.dev.runner import run_dev

__all__ = ["DevLayout", "DevPorts", "run_dev"]
