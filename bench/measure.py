"""What a measure is, for the runner: a name, the figures it promises, and a run function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import Figure
from bench.stack import Stack


@dataclass(frozen=True)
class Measure:
    name: str
    title: str
    figures: tuple[str, ...]
    """Every figure `run` returns, by name: the smoke test checks none went missing."""
    run: Callable[[Stack, bool], tuple[dict[str, object], list[Figure]]]
    """(stack, smoke) -> (parameters used, figures). Starts and stops its own MCP servers."""
