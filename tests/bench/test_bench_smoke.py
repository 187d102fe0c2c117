"""`python -m bench --smoke`: every measure still runs and produces every figure it promises.

No goal is asserted: the smoke counts (5 trials, 1,000 entries...) are far too small for a
percentile to mean anything, and `make test` runs on shared machines. What rots without this
test is the bench itself: a renamed helper, a changed CLI, a server that no longer starts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from bench.measures import MEASURES
from tests.support.services import REPO_ROOT

# the fixture's run counts against the first test's pytest-timeout: give it the run's 300 s
pytestmark = [pytest.mark.integration, pytest.mark.timeout(330)]
Smoke = tuple[subprocess.CompletedProcess[str], dict[str, Any]]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    output = tmp_path_factory.mktemp("bench") / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert output.exists(), f"no results file; output:\n{run.stdout}\n{run.stderr}"
    return run, json.loads(output.read_text())


def test_the_smoke_run_succeeds(smoke: Smoke) -> None:
    run, document = smoke
    errors = {m["name"]: m["error"] for m in document["measures"] if m["error"]}
    assert run.returncode == 0, f"{errors}\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    assert "results written to" in run.stdout  # the table and the summary were printed


def test_the_results_file_is_well_formed(smoke: Smoke) -> None:
    _, document = smoke
    assert document["schema"] == 1
    assert document["smoke"] is True
    assert isinstance(document["date"], str) and isinstance(document["passed"], bool)
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["python"]
    assert [m["name"] for m in document["measures"]] == list(MEASURES)


@pytest.mark.parametrize("name", list(MEASURES))
def test_every_figure_is_produced(smoke: Smoke, name: str) -> None:
    _, document = smoke
    measure = next(m for m in document["measures"] if m["name"] == name)
    assert measure["error"] is None
    figures = {f["name"]: f for f in measure["figures"]}
    assert set(figures) == set(MEASURES[name].figures)
    for figure in figures.values():
        value = figure["value"]
        assert isinstance(value, int | float) and math.isfinite(value), figure
        # a difference of two p50s, or of two RSS means, may come out below zero; nothing else
        assert value >= 0 or figure["name"].startswith(("added latency", "RSS growth, broker",
                                                         "RSS growth, MCP")), figure
        assert isinstance(figure["unit"], str) and figure["unit"], figure
        goal = figure["goal"]
        if goal is not None:
            assert goal["op"] in ("<=", "<", ">=") and isinstance(goal["limit"], int | float)
            assert isinstance(figure["passed"], bool)
