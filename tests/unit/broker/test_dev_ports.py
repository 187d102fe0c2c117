"""`agent-broker dev --port-offset` / AGENT_BROKER_DEV_PORT_OFFSET: the stack's ports, moved."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import broker.dev
from broker.cli import app
from broker.dev import DevPorts

runner = CliRunner()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `agent-broker dev` would have started, instead of starting it."""
    calls: list[dict[str, Any]] = []

    def fake_run_dev(repo_root: Path, **options: Any) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr(broker.dev, "run_dev", fake_run_dev)
    monkeypatch.delenv("AGENT_BROKER_DEV_PORT_OFFSET", raising=False)
    return calls


def test_shifted_moves_every_port_and_keeps_the_contract_defaults() -> None:
    assert DevPorts().shifted(0) == DevPorts()
    assert astuple(DevPorts().shifted(1000)) == tuple(p + 1000 for p in astuple(DevPorts()))


def test_without_an_offset_the_stack_runs_on_the_contract_ports(
    started: list[dict[str, Any]],
) -> None:
    assert runner.invoke(app, ["dev"]).exit_code == 0
    assert started[0]["ports"] == DevPorts(broker=8400, mcp=8401, idp=8402, cerbos_http=3592,
                                           cerbos_grpc=3593, redis=6380)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_offset_moves_the_stack(started: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                                    how: str) -> None:
    if how == "environment":  # what `AGENT_BROKER_DEV_PORT_OFFSET=100 make run` does
        monkeypatch.setenv("AGENT_BROKER_DEV_PORT_OFFSET", "100")
        args = ["dev"]
    else:
        args = ["dev", "--port-offset", "100"]
    assert runner.invoke(app, args).exit_code == 0
    assert started[0]["ports"] == DevPorts().shifted(100)
    assert started[0]["ports"].broker == 8500


def test_an_offset_past_the_last_port_is_refused_before_anything_starts(
    started: list[dict[str, Any]],
) -> None:
    result = runner.invoke(app, ["dev", "--port-offset", "60000"])
    assert result.exit_code == 2
    assert "--port-offset" in result.output and "68400" in result.output
    assert started == []
