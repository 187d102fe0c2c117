"""The CLI: config checking with paths, secret hashing, key listing and rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml
from typer.testing import CliRunner

from broker.cli import app
from broker.secrets import check_secret

runner = CliRunner()


def write_config(path: Path, **over) -> Path:
    config = {
        "issuer": "http://127.0.0.1:8400",
        "signing": {"keys_file": str(path.parent / "keys.json")},
        "upstream_issuers": [{"issuer": "http://127.0.0.1:8402", "audiences": ["agent-host"]}],
        "resources": [{"uri": "http://127.0.0.1:8401/mcp", "scopes": ["crm:read"]}],
        "agents": [],
        **over,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_hash_secret_prints_the_hash_as_last_line() -> None:
    result = runner.invoke(app, ["agents", "hash-secret", "correct horse battery staple"])
    assert result.exit_code == 0
    assert check_secret("correct horse battery staple", result.output.strip().splitlines()[-1])


def test_hash_secret_without_argument_generates_one() -> None:
    lines = runner.invoke(app, ["agents", "hash-secret"]).output.strip().splitlines()
    secret = lines[0].rsplit(" ", 1)[-1]
    assert len(secret) >= 40 and check_secret(secret, lines[-1])


def test_check_accepts_a_valid_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--config", str(write_config(tmp_path / "b.yaml"))])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_check_names_every_problem_by_path(tmp_path: Path) -> None:
    config = write_config(tmp_path / "b.yaml", token_ttl_seconds=5, agents=[
        {"client_id": "a", "auth": {"method": "client_secret_basic", "secret_hash": "plain"},
         "scopes": ["crm read"], "resources": ["http://127.0.0.1:9/x"]},
    ])
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2
    for path in ("token_ttl_seconds", "agents[0].auth.secret_hash", "agents[0].scopes"):
        assert path in result.output, result.output


def test_check_refuses_a_short_dpop_nonce_secret_without_echoing_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "b.yaml", dpop_nonce_secret="too-short-a-secret")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2
    assert "dpop_nonce_secret" in result.output and "32 bytes" in result.output
    assert "too-short-a-secret" not in result.output
    good = write_config(tmp_path / "g.yaml", dpop_nonce_secret="x" * 32)
    assert runner.invoke(app, ["check", "--config", str(good)]).exit_code == 0


def test_check_reports_cross_references(tmp_path: Path) -> None:
    config = write_config(tmp_path / "b.yaml", agents=[
        {"client_id": "a", "auth": {"method": "private_key_jwt", "jwks": {"keys": []}},
         "scopes": ["crm:*"], "resources": ["http://127.0.0.1:9/x"], "may_delegate_to": ["z"]},
    ])
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2
    assert "agents[0].resources[0]" in result.output
    assert "agents[0].may_delegate_to[0]" in result.output


def test_check_reports_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["check", "--config", str(tmp_path / "none.yaml")])
    (tmp_path / "list.yaml").write_text("- 1\n")
    listed = runner.invoke(app, ["check", "--config", str(tmp_path / "list.yaml")])
    assert missing.exit_code == listed.exit_code == 2
    assert "cannot read" in missing.output and "mapping" in listed.output


def test_env_overrides_the_file(tmp_path: Path, monkeypatch) -> None:
    from broker.config_loading import load_settings

    config = write_config(tmp_path / "b.yaml")
    monkeypatch.setenv("BROKER_CERBOS__TIMEOUT_MS", "750")
    monkeypatch.setenv("BROKER_TOKEN_TTL_SECONDS", "120")
    settings = load_settings(config)
    assert settings.cerbos.timeout_ms == 750 and settings.token_ttl_seconds == 120


def test_keys_rotate_and_list(tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "b.yaml"))
    listed = runner.invoke(app, ["keys", "list", "--config", config])
    assert listed.exit_code == 0 and "signing" in listed.output
    keys_file = tmp_path / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    rotated = runner.invoke(app, ["keys", "rotate", "--config", config, "--activate-in", "60"])
    assert rotated.exit_code == 0, rotated.output
    listed = runner.invoke(app, ["keys", "list", "--config", config])
    assert "pending" in listed.output and "signing" in listed.output


def test_agents_list(tmp_path: Path) -> None:
    config = write_config(tmp_path / "b.yaml", agents=[
        {"client_id": "research-agent",
         "auth": {"method": "private_key_jwt", "jwks_uri": "http://127.0.0.1:9/jwks"},
         "scopes": ["crm:*"], "resources": ["http://127.0.0.1:8401/mcp"]},
    ])
    result = runner.invoke(app, ["agents", "list", "--config", str(config)])
    assert result.exit_code == 0 and "research-agent" in result.output


def test_serve_runs_the_app_tuned_and_with_the_deployed_options(tmp_path: Path, monkeypatch
                                                                ) -> None:
    import gc

    import uvicorn

    from broker import logs
    from broker.http import serving

    served: dict[str, object] = {}
    monkeypatch.setattr(logs, "configure", lambda level: None)  # the test process's logging
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(
        options, app=app, thresholds=gc.get_threshold()))
    before = gc.get_threshold()
    try:
        result = runner.invoke(app, ["serve", "--config", str(write_config(tmp_path / "b.yaml")),
                                     "--port", "8499", "--log-level", "warning"])
    finally:
        gc.set_threshold(*before)
    assert result.exit_code == 0, result.output
    assert served["thresholds"] == serving.GC_THRESHOLDS != before
    assert {k: served[k] for k in ("host", "port", "log_level", "proxy_headers",
                                   "server_header", "log_config")} == {
        "host": "127.0.0.1", "port": 8499, "log_level": "warning", "proxy_headers": False,
        "server_header": False, "log_config": None}
