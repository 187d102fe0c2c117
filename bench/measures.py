"""Every measure `python -m bench` knows, in the order it runs them (`--only` picks some)."""

from __future__ import annotations

from bench import (
    call_cost,
    exchange,
    mcp_compare,
    memory,
    mixed_load,
    profile,
    propagation,
    session_scale,
)
from bench.measure import Measure

MEASURES: dict[str, Measure] = {m.name: m for m in (
    propagation.MEASURE, call_cost.MEASURE, memory.MEASURE, exchange.MEASURE,
    profile.MEASURE, session_scale.MEASURE, mcp_compare.CALL_MEASURE,
    mcp_compare.LIST_MEASURE, mixed_load.MEASURE)}
