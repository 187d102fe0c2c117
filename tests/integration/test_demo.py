"""`agent-broker demo` (what `make demo` runs) against a real dev stack, as a newcomer runs it.

The stack is `python -m broker.dev` on free ports in a temporary run dir (like
test_dev_stack.py); the demo finds every URL and secret in that run dir, through the console
script, so what is tested is `make run` + `make demo` with other ports.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.dev import DevLayout
from broker.dev.config import ensure_dev_config
from broker.dev.services import broker_command
from tests.integration.test_dev_stack import DevStack, _free_ports
from tests.support.services import REPO_ROOT

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_S = 30
STEPS = [
    "1. alice signs in at the dev IdP",
    "2. research-agent exchanges alice's ID token",
    "3. The agent lists the MCP tools",
    "4. Allowed, denied and argument-conditioned calls",
    "5. A sub-agent, summarizer-agent, gets a narrower token",
    "6. erin, the admin, revokes the session; the next call fails",
    "7. Summary",
]
RUN_FIRST = "Run `make run` first"


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    # Wide and plain, so that each line of the story is one line of the output.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([*broker_command(), "demo", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT_S, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = DevStack(tmp_path_factory.mktemp("demo") / "run", _free_ports())
    try:
        stack.wait_ready()  # the banner comes after the demo MCP server is ready
        yield stack
    finally:
        stack.close()


def test_the_demo_tells_the_whole_story_against_the_running_stack(stack: DevStack) -> None:
    ran = run_demo("--run-dir", str(stack.run_dir))

    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    positions = [out.find(step) for step in STEPS]
    assert -1 not in positions, f"missing steps {[s for s in STEPS if s not in out]}:\n{out}"
    assert positions == sorted(positions)
    assert "✗" not in out
    assert f"broker      {stack.layout.broker_url}" in out  # found in the run dir, no flags
    for expected in (
        "granted 'crm:read crm:write email:send'",
        "not_delegable_by_user",
        "send_email(to='eve@evil.test') is refused",
        "act nests the chain: summarizer-agent ← research-agent ← alice",
        "add_note is answered 403 insufficient_scope",
        "the agent's next call is refused: HTTP 401 invalid_token",
        "ms after the revoke call returned",
    ):
        assert expected in out, out

    # `make demo` twice: the revocation cut off that session only; alice's next login works.
    again = run_demo("--run-dir", str(stack.run_dir))
    assert again.returncode == 0, again.stdout + again.stderr


def test_without_a_run_dir_the_demo_says_to_run_make_run_first(tmp_path: Path) -> None:
    ran = run_demo("--run-dir", str(tmp_path / "nothing-here"))

    assert ran.returncode == 2
    assert RUN_FIRST in ran.stdout
    assert "Traceback" not in ran.stdout + ran.stderr


def test_with_a_stopped_stack_the_demo_says_to_run_make_run_first(tmp_path: Path) -> None:
    """The run dir of an earlier `make run`, but nothing listens: the ports are named."""
    layout = DevLayout.create(REPO_ROOT, run_dir=tmp_path / "run", ports=_free_ports())
    ensure_dev_config(layout)

    ran = run_demo("--run-dir", str(layout.run_dir))

    assert ran.returncode == 2
    assert "the dev stack is not running" in ran.stdout
    assert layout.broker_url in ran.stdout
    assert RUN_FIRST in ran.stdout
