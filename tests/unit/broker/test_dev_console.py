"""The dev stack's admin console: its secrets live beside the client secrets, never in YAML."""

from __future__ import annotations

import json
from pathlib import Path

from broker.dev import DevLayout
from broker.dev.config import CONSOLE_CLIENT, CONSOLE_ENV, ensure_dev_config
from broker.dev.services import DEMO_USERS
from tests.support.services import REPO_ROOT


def _layout(tmp_path: Path) -> DevLayout:
    return DevLayout.create(REPO_ROOT, run_dir=tmp_path / "run")


def test_the_console_secrets_go_to_the_secrets_file_and_the_broker_env(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    config = ensure_dev_config(layout)

    console = config.settings.admin.console
    assert console is not None and console.client_id == CONSOLE_CLIENT
    assert config.settings.admin.audiences == [CONSOLE_CLIENT]
    stored = json.loads(layout.secrets_file.read_text())
    assert config.broker_env == {name: stored[key] for key, name in CONSOLE_ENV.items()}
    assert console.session_secret.get_secret_value() == config.broker_env[
        "BROKER_ADMIN__CONSOLE__SESSION_SECRET"]
    text = layout.config_file.read_text()
    assert all(secret not in text for secret in config.broker_env.values())
    assert "admin" in DEMO_USERS["erin"]["roles"]


def test_a_kept_run_dir_without_console_secrets_gets_them(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    first = ensure_dev_config(layout)
    clients_only = {k: v for k, v in first.secrets.items() if k not in CONSOLE_ENV}
    layout.secrets_file.write_text(json.dumps(clients_only))

    kept = ensure_dev_config(layout)

    assert kept.notes == []
    assert set(kept.broker_env) == set(CONSOLE_ENV.values())
    assert json.loads(layout.secrets_file.read_text()) == kept.secrets
    assert layout.secrets_file.stat().st_mode & 0o777 == 0o600


def test_a_kept_config_without_a_console_starts_without_one(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    ensure_dev_config(layout)
    text = layout.config_file.read_text()
    layout.config_file.write_text(text[: text.index("\nadmin:")] + "\n")

    kept = ensure_dev_config(layout)

    assert kept.settings.admin.console is None
    assert kept.broker_env == {}
    assert any("no admin console" in note for note in kept.notes)
