"""`agent-broker dev`: check, configure, start the local stack, print how to use it, supervise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from rich.console import Console
from rich.text import Text

from broker.dev import services
from broker.dev.banner import print_ready
from broker.dev.config import DevConfig, DevConfigError, ensure_dev_config
from broker.dev.layout import DevLayout, DevPorts
from broker.dev.preflight import (
    check_files,
    check_ports,
    find_cerbos,
    find_redis,
    remove_pid_file,
    write_pid_file,
)
from broker.dev.stack import Supervisor

EXIT_PREFLIGHT = 2
EXIT_INTERRUPTED = 130


def run_dev(repo_root: Path, *, with_mcp: bool = True, ports: DevPorts | None = None,
            run_dir: Path | None = None, console: Console | None = None) -> int:
    """Run the dev stack in the foreground until Ctrl-C; return the process exit status.

    `ports` default to the contract's (broker 8400, MCP 8401, IdP 8402, Cerbos 3592/3593,
    Redis 6380) and `run_dir` to `<repo_root>/.run`; tests pass others. 0 after a requested
    stop, 1 when a service failed to start or died, 2 when a check failed before any start.
    """
    console = console or Console(highlight=False)
    try:
        return _run_dev(DevLayout.create(repo_root, run_dir=run_dir, ports=ports), console,
                        with_mcp=with_mcp)
    except KeyboardInterrupt:  # before the stack's own signal handlers were in place
        console.print("interrupted")
        return EXIT_INTERRUPTED


def _run_dev(layout: DevLayout, console: Console, *, with_mcp: bool) -> int:
    problems = check_files(layout) or check_ports(layout)
    if problems:
        console.print("[bold red]cannot start the dev stack:[/]")
        for problem in problems:
            console.print(f"  - {problem}", markup=False, soft_wrap=True)
        return EXIT_PREFLIGHT
    try:
        config = ensure_dev_config(layout)
    except DevConfigError as exc:
        console.print(Text.assemble(("cannot start the dev stack: ", "bold red"), exc.summary),
                      soft_wrap=True)
        for problem in exc.problems:
            console.print(f"  - {problem}", markup=False, soft_wrap=True)
        return EXIT_PREFLIGHT
    verb = "generated" if config.generated else "using"
    console.print(f"{verb} {layout.shown(config.path)} (secrets in "
                  f"{layout.shown(layout.secrets_file)})", markup=False, soft_wrap=True)
    for note in config.notes:
        console.print(Text.assemble(("warning: ", "yellow"), note), soft_wrap=True)
    redis_bin, cerbos_bin = find_redis(), find_cerbos(layout.repo_root)
    if redis_bin is None or cerbos_bin is None:  # check_files said they exist
        return EXIT_PREFLIGHT
    write_pid_file(layout)
    try:
        return asyncio.run(_run(layout, config, console, redis_bin, cerbos_bin,
                                with_mcp=with_mcp))
    finally:
        remove_pid_file(layout)


async def _run(layout: DevLayout, config: DevConfig, console: Console, redis_bin: Path,
               cerbos_bin: Path, *, with_mcp: bool) -> int:
    supervisor = Supervisor(console)
    # trust_env=False: probes go to loopback, never through an environment proxy
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as http:
        mcp = with_mcp and await services.check_crm_available(layout)
        if with_mcp and not mcp:
            supervisor.say(f"the demo MCP server ({services.CRM_MODULE}) is not available "
                           "yet: starting the stack without it", style="yellow")

        async def start(stack: Supervisor) -> None:
            await stack.start_ready(
                services.redis_spec(layout, redis_bin),
                services.cerbos_spec(layout, cerbos_bin, http),
                services.idp_spec(layout, http),
            )
            await services.seed_users(http, layout.idp_url)
            stack.say("dev IdP users: " + ", ".join(
                f"{sub} ({' '.join(claims['roles'])})"
                for sub, claims in services.DEMO_USERS.items()), style="green")
            await stack.start_ready(services.broker_spec(layout, http, config.broker_env))
            if mcp:
                await stack.start_ready(services.crm_spec(layout, http))
            print_ready(console, layout, config, mcp_running=mcp)

        return await supervisor.run(start)
