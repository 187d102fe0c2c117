"""How the demo looks: numbered steps, a line of why, ✓/✗ checks, tables of scopes and claims.

Every check is also recorded, so the closing summary and the exit status come from the same
place as what was printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

OK, FAIL = "✓", "✗"


@dataclass
class StepRecord:
    number: int
    title: str
    checks: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks)


class Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.steps: list[StepRecord] = []

    @property
    def failures(self) -> list[str]:
        return [f"step {s.number}: {what}" for s in self.steps for ok, what in s.checks
                if not ok]

    def step(self, title: str, why: str) -> None:
        record = StepRecord(len(self.steps) + 1, title)
        self.steps.append(record)
        self.console.print()
        self.console.rule(Text(f" {record.number}. {title} ", style="bold cyan"),
                          align="left", style="cyan")
        self.console.print(Text(why, style="italic"), soft_wrap=False)

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        """Print `✓ what` or `✗ what`, with an optional dim detail; record it."""
        if self.steps:
            self.steps[-1].checks.append((ok, what))
        self.console.print(Text.assemble(
            (f"  {OK if ok else FAIL} ", "bold green" if ok else "bold red"), what))
        if detail:  # on its own line: long details wrap badly beside the check
            self.console.print(Text(f"      {detail}", style="dim"))
        return ok

    def note(self, text: str) -> None:
        self.console.print(Text(f"  {text}", style="dim"))

    def say(self, text: str | Text) -> None:
        self.console.print(Text.assemble("  ", text) if isinstance(text, Text) else f"  {text}",
                           highlight=False)

    def print(self, renderable: Any) -> None:
        self.console.print(renderable)


def claims_panel(title: str, claims: Mapping[str, Any], keys: Iterable[str]) -> Panel:
    """The chosen claims, one per line; times as seconds from now (humans read that)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    now = time.time()
    for key in keys:
        if key not in claims:
            continue
        value = claims[key]
        if key in ("exp", "iat", "nbf", "auth_time") and isinstance(value, int | float):
            shown = f"{value}  ({_relative(value - now)})"
        elif isinstance(value, str):
            shown = value
        else:
            shown = json.dumps(value)
        table.add_row(key, shown)
    # Decoded without verifying: fine for showing; the MCP server is what verifies.
    return Panel(table, title=title, title_align="left", expand=False,
                 subtitle="decoded, unverified", subtitle_align="left")


def _relative(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 0:
        return f"in {seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"in {seconds} s"
    return f"{-seconds} s ago"


def scope_table(requested: list[str], granted: list[str], reasons: Mapping[str, str],
                *, title: str) -> Table:
    """One row per requested scope: granted, or dropped and why."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("scope", style="bold")
    table.add_column("requested")
    table.add_column("granted")
    table.add_column("why it was dropped")
    for scope in dict.fromkeys([*requested, *granted]):
        given = scope in granted
        table.add_row(scope, OK if scope in requested else "-",
                      # not ✗: that mark means a check failed, and dropping is by design
                      Text(OK, style="green") if given else Text("dropped", style="red"),
                      "" if given else reasons.get(scope, "?"))
    return table


def tools_table(columns: Mapping[str, list[str]], *, title: str) -> Table:
    """Which tools each token lists (one column per token)."""
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("tool", style="bold")
    for name in columns:
        table.add_column(name, justify="center")
    every = dict.fromkeys(tool for tools in columns.values() for tool in tools)
    for tool in every:
        table.add_row(tool, *(Text(OK, style="green") if tool in tools else Text("-", "dim")
                              for tools in columns.values()))
    return table


def summary_table(steps: list[StepRecord]) -> Table:
    table = Table(expand=False)
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("checks", justify="right")
    table.add_column("", justify="center")
    for step in steps:
        passed = sum(ok for ok, _ in step.checks)
        table.add_row(str(step.number), step.title, f"{passed}/{len(step.checks)}",
                      Text(OK, style="bold green") if step.ok else Text(FAIL, style="bold red"))
    return table
