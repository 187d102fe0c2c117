"""`agent-broker demo`: find the running dev stack, tell the story, sum it up, exit 0 or not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import httpx2
from mcp.shared.exceptions import MCPError
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from broker.client import TokenExchangeError
from broker.demo.render import Narrator, summary_table
from broker.demo.revoke import TARGET_MS, revoke_session
from broker.demo.story import Story
from broker.demo.target import DemoTarget, StackNotReady, check_running, resolve_target

EXIT_OK, EXIT_FAILED, EXIT_NOT_RUNNING = 0, 1, 2
HTTP_TIMEOUT_S = 10.0
# What can stop the story half-way: the stack answering unexpectedly or going away.
STORY_ERRORS = (TokenExchangeError, StackNotReady, RuntimeError, KeyError, ValueError,
                httpx.HTTPError, httpx2.HTTPError, MCPError)


def run_demo(run_dir: Path, *, broker: str | None = None, mcp: str | None = None,
             idp: str | None = None, console: Console | None = None) -> int:
    """Run the story against the dev stack; 0 when it went as expected, 1 when not, 2 when
    there is no running stack (with a message saying to run `make run` first)."""
    console = console or Console(highlight=False)
    try:
        target = resolve_target(run_dir, broker=broker, mcp=mcp, idp=idp)
    except StackNotReady as exc:
        return _not_running(console, exc)
    return asyncio.run(_run(target, console))


def _not_running(console: Console, exc: StackNotReady) -> int:
    console.print(Text.assemble(("✗ cannot run the demo: ", "bold red"), str(exc)),
                  soft_wrap=True)
    return EXIT_NOT_RUNNING


async def _run(target: DemoTarget, console: Console) -> int:
    # trust_env=False: the stack is on loopback; an environment proxy must not see tokens
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
        try:
            await check_running(target, http)
        except StackNotReady as exc:
            return _not_running(console, exc)
        console.print(_intro(target))
        narrator = Narrator(console)
        story = Story(target, narrator, http)
        delay_ms: float | None = None
        try:
            for step in (story.sign_in, story.exchange_for_agent, story.list_tools,
                         story.call_tools, story.delegate):
                await step()
            delay_ms = await revoke_session(story)
        except STORY_ERRORS as exc:
            narrator.check(False, f"the story stopped here: {type(exc).__name__}: {exc}")
    return _summary(narrator, target, delay_ms)


def _intro(target: DemoTarget) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("broker", target.broker)
    table.add_row("MCP server", target.mcp)
    table.add_row("dev IdP", target.idp)
    return Panel(table, title="agent-broker demo: a user, two agents, an admin",
                 title_align="left", expand=False)


def _summary(narrator: Narrator, target: DemoTarget, delay_ms: float | None) -> int:
    console = narrator.console
    console.print()
    console.rule(Text(f" {len(narrator.steps) + 1}. Summary ", style="bold cyan"),
                 align="left", style="cyan")
    console.print(summary_table(narrator.steps))
    failures = narrator.failures
    if failures:
        console.print(Text(f"✗ the story did not go as expected: {len(failures)} check(s) "
                           "failed", style="bold red"))
        for failure in failures:
            console.print(f"  - {failure}", markup=False, highlight=False)
        console.print("  (changed policies/ or .run/broker.yaml? The demo expects the dev "
                      "stack as shipped.)", style="dim")
        return EXIT_FAILED
    measured = f"{delay_ms:.1f} ms" if delay_ms is not None else "?"
    for line in (
        "alice's agent got only what she may delegate: the scope is the intersection.",
        "Every tools/list and tools/call was decided by Cerbos, arguments included.",
        "The sub-agent's token was narrower, shorter-lived at most, and names the chain.",
        f"One admin call revoked the whole delegation tree; refused after {measured} "
        f"(target {TARGET_MS} ms).",
    ):
        console.print(Text.assemble(("  ✓ ", "bold green"), line))
    console.print(f"\nSee the revoked sessions in the admin console: {target.broker}/admin/ "
                  "(sign in as erin).", soft_wrap=True)
    return EXIT_OK
