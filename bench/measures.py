"""Every measure `python -m bench` knows, in the order it runs them (`--only` picks some)."""

from __future__ import annotations

from bench import call_cost, memory, propagation
from bench.measure import Measure

MEASURES: dict[str, Measure] = {m.name: m for m in (
    propagation.MEASURE, call_cost.MEASURE, memory.MEASURE)}
