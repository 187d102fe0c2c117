"""Talking to demo CRM MCP server processes: the auth probe, waits, and memory.

The probe is an MCP `initialize` POST: a revoked token gets 401 from the auth middleware
before any MCP work, so polling it measures the revocation check, not the server's tools.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.integration.mcp_processes import McpServerProcess
from tests.support.mcp import INITIALIZE, MCP_HEADERS


def probe_client() -> httpx.AsyncClient:
    """For the untimed checks (is it serving, is a token refused yet); the timed polls of the
    propagation measure use bench/probe.py instead."""
    return httpx.AsyncClient(trust_env=False, timeout=10)


async def status(http: httpx.AsyncClient, server: McpServerProcess, token: str) -> int:
    response = await http.post(server.url, json=INITIALIZE,
                               headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    return response.status_code


async def wait_status(http: httpx.AsyncClient, server: McpServerProcess, token: str,
                      expected: int, within: float) -> float:
    """Poll until the server answers `expected`; seconds waited. Raises past `within`, e.g.
    while a feed loading a million entries still refuses every token (fails closed)."""
    start = time.monotonic()
    while (code := await status(http, server, token)) != expected:
        if time.monotonic() - start > within:
            raise TimeoutError(f"{server.name} still answers {code}, not {expected}, "
                               f"after {within:.0f} s (log {server.log_path})")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc/<pid>/status (VmRSS, in kB there)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def settled_rss(pid: int, *, samples: int = 5, interval: float = 0.2) -> int:
    """RSS once it stops moving: the last of `samples` reads, taken `interval` apart after
    the process went idle (a read mid-request would count transient buffers)."""
    value = rss_bytes(pid)
    for _ in range(samples - 1):
        await asyncio.sleep(interval)
        value = rss_bytes(pid)
    return value


def pid_of(server: McpServerProcess) -> int:
    if server.pid is None:
        raise RuntimeError(f"{server.name} is not running")
    return server.pid
