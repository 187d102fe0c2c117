"""A bench goal's comparison: a ceiling (`<=`, `<`) or a floor (`>=`, a throughput)."""

from __future__ import annotations

from bench.results import Goal


def test_a_ceiling_is_met_at_or_below_it() -> None:
    assert Goal(10).met(10) and not Goal(10).met(10.1)
    assert not Goal(10, op="<").met(10)


def test_a_floor_is_met_at_or_above_it() -> None:
    floor = Goal(2000, op=">=", stretch=3000)
    assert floor.met(2000) and not floor.met(1999)
    assert floor.met(3000, limit=floor.stretch) and not floor.met(2500, limit=floor.stretch)
    assert floor.describe("req/s") == "≥ 2000 req/s (stretch 3000)"
