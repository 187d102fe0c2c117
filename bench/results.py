"""Figures, goals and the results file (`bench/results.json`, schema 1) with its rich table."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Goal:
    """`value <= limit` (or `<`, or `>=` for a floor such as a throughput); `stretch` is the
    tighter figure we aim for beyond the goal."""

    limit: float
    op: Literal["<=", "<", ">="] = "<="
    stretch: float | None = None

    def met(self, value: float, limit: float | None = None) -> bool:
        bound = self.limit if limit is None else limit
        if self.op == ">=":
            return value >= bound
        return value <= bound if self.op == "<=" else value < bound

    def describe(self, unit: str) -> str:
        symbol = {"<=": "≤", "<": "<", ">=": "≥"}[self.op]
        text = f"{symbol} {self.limit:g} {unit}".rstrip()
        return f"{text} (stretch {self.stretch:g})" if self.stretch is not None else text

    def as_json(self) -> dict[str, Any]:
        return {"op": self.op, "limit": self.limit, "stretch": self.stretch}


@dataclass(frozen=True)
class Figure:
    """One measured number. Without a goal it is context (e.g. the poll resolution)."""

    name: str
    value: float
    unit: str
    goal: Goal | None = None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)

    @property
    def stretch_met(self) -> bool | None:
        if self.goal is None or self.goal.stretch is None:
            return None
        return self.goal.met(self.value, self.goal.stretch)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit,
                "goal": None if self.goal is None else self.goal.as_json(),
                "passed": self.passed, "stretch_met": self.stretch_met, "note": self.note}


@dataclass
class MeasureResult:
    name: str
    title: str
    parameters: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(f.passed is not False for f in self.figures)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "parameters": self.parameters,
                "duration_s": round(self.duration_s, 2), "error": self.error,
                "passed": self.passed, "figures": [f.as_json() for f in self.figures]}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _git_commit(repo: Path) -> str | None:
    try:
        # a fixed argv, no shell: which code the figures are for (with "+dirty" if edited)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,  # noqa: S607
                              capture_output=True, text=True, timeout=5, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo,  # noqa: S607
                               capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head.strip() + ("+dirty" if dirty.strip() else "")


def machine_info(repo: Path, **extra: Any) -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python": platform.python_version(), "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
            "mem_total_mb": _mem_total_mb(), "git_commit": _git_commit(repo), **extra}


def results_document(results: list[MeasureResult], *, smoke: bool, started: datetime,
                     machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "date": started.astimezone(UTC).isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds(), 1),
        "smoke": smoke,
        "machine": machine,
        "passed": all(r.passed for r in results),
        "measures": [r.as_json() for r in results],
    }


def write_results(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: a NaN would make the file unreadable by strict JSON parsers
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _format(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return str(value)
    digits = 0 if abs(value) >= 1000 else 2 if abs(value) >= 1 else 3
    return f"{value:,.{digits}f} {unit}".rstrip()


def results_table(results: list[MeasureResult], *, smoke: bool) -> Table:
    title = "agent-broker bench" + (" (smoke: tiny counts, goals not meaningful)" if smoke else "")
    table = Table(title=title, show_lines=False)
    for column, justify in (("measure", "left"), ("figure", "left"), ("value", "right"),
                            ("goal", "left"), ("result", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        if result.error is not None:
            table.add_row(result.title, "", "", "", f"[red]error: {result.error}[/red]")
            continue
        for i, figure in enumerate(result.figures):
            verdict = {True: "[green]pass[/green]", False: "[red]MISS[/red]", None: ""}
            mark = verdict[figure.passed]
            if figure.stretch_met:
                mark += " [green](stretch)[/green]"
            goal = figure.goal.describe(figure.unit) if figure.goal is not None else ""
            table.add_row(result.title if i == 0 else "", figure.name,
                          _format(figure.value, figure.unit), goal, mark)
        table.add_section()
    return table
