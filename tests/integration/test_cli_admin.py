"""`agent-broker sessions list|revoke`, `revoke --user|--agent|--session|--token`, `audit`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from broker.cli import app
from tests.integration.revocation_support import RevocationStack, stack_fixture
from tests.support.services import free_port

runner = CliRunner()


stack = stack_fixture()


@pytest.fixture
def config(stack: RevocationStack, tmp_path: Path) -> Path:
    path = tmp_path / "broker.yaml"
    settings = stack.broker.settings
    path.write_text(yaml.safe_dump({"redis_url": settings.redis_url,
                                    "redis_key_prefix": settings.redis_key_prefix}))
    return path


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.output


def test_sessions_list_and_revoke(stack: RevocationStack, config: Path) -> None:
    user, id_token = stack.login()
    root = stack.mint(id_token)
    child = stack.delegate(root)
    code, output = cli("sessions", "list", "--config", str(config), "--user", user)
    assert code == 0, output
    assert root.sid in output and child.sid in output
    assert "research-agent > summarizer-agent" in output
    assert "active" in output

    code, output = cli("sessions", "revoke", root.sid, "--config", str(config),
                       "--reason", "left the company")
    assert code == 0, output
    assert "2 entries" in output
    assert not stack.is_active(child.token)
    code, output = cli("sessions", "list", "--config", str(config), "--user", user)
    assert output.count("revoked") == 2

    code, output = cli("sessions", "revoke", "no-such-session", "--config", str(config))
    assert code == 1
    assert "no live session" in output


@pytest.mark.parametrize("grain", ["user", "agent", "pair", "session", "token"])
def test_revoke_each_grain(stack: RevocationStack, config: Path, grain: str) -> None:
    user, id_token = stack.login()
    minted = stack.mint(id_token)
    args = {"user": ["--user", user], "agent": ["--agent", "research-agent"],
            "pair": ["--user", user, "--agent", "research-agent"],
            "session": ["--session", minted.sid], "token": ["--token", minted.jti]}[grain]
    code, output = cli("revoke", "--config", str(config), *args)
    assert code == 0, output
    assert not stack.is_active(minted.token)
    # an agent-wide revocation concerns no one user: it is in the agent's trail
    about = ["--agent", "research-agent"] if grain == "agent" else ["--user", user]
    code, output = cli("audit", "--config", str(config), *about)
    assert code == 0, output
    assert "revocation" in output and "exchange" in output
    assert "by cli:" in output


@pytest.mark.parametrize("args", [[], ["--agent", "a", "--session", "s"],
                                  ["--token", "t", "--user", "u"]])
def test_revoke_needs_exactly_one_grain(config: Path, args: list[str]) -> None:
    code, output = cli("revoke", "--config", str(config), *args)
    assert code == 2
    assert "name one token, one session, a user, an agent" in output


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump({"redis_url": f"redis://127.0.0.1:{free_port()}/0",
                                    "redis_timeout_ms": 200}))
    code, output = cli("revoke", "--config", str(path), "--user", "alice")
    assert code == 1
    assert "did not answer" in output and "nothing was done" in output
