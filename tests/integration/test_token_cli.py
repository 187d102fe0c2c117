"""`agent-broker token exchange | inspect` against the real broker and a real dev-IdP login."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from broker.cli import app
from broker.client import DPoPKey, decode_unverified
from broker.dpop import validate_proof
from tests.integration.conftest import CRM, SECRETS, Broker

runner = CliRunner()


def exchange(broker: Broker, *args: str, secret: str = SECRETS["research-agent"],
             stdin: str | None = None):
    argv = ["token", "exchange", "--broker", broker.url, "--client-id", "research-agent",
            "--resource", CRM, *args]
    return runner.invoke(app, argv, env={"AGENT_BROKER_CLIENT_SECRET": secret}, input=stdin)


def test_prints_the_token_alone(broker: Broker, id_tokens: dict, tmp_path: Path) -> None:
    subject = tmp_path / "id_token"
    subject.write_text(id_tokens["alice"] + "\n")
    result = exchange(broker, "--scope", "crm:read", "--subject-token-file", str(subject))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    header, claims = decode_unverified(token)
    assert header["typ"] == "at+jwt" and claims["scope"] == "crm:read" and claims["aud"] == CRM


def test_json_from_stdin(broker: Broker, id_tokens: dict) -> None:
    result = exchange(broker, "--subject-token", "-", "--json", "--scope", "crm:read crm:write",
                      stdin=id_tokens["alice"])
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["scope"] == "crm:read crm:write" and body["token_type"] == "Bearer"
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert 0 < body["expires_in"] <= 300


def test_redelegation_with_client_secret_post(broker: Broker, id_tokens: dict) -> None:
    parent = exchange(broker, "--subject-token", "-", stdin=id_tokens["alice"]).stdout.strip()
    result = runner.invoke(app, [
        "token", "exchange", "--broker", broker.url, "--client-id", "summarizer-agent",
        "--resource", CRM, "--auth-method", "post", "--subject-token-type", "access_token",
        "--subject-token", "-"], env={"AGENT_BROKER_CLIENT_SECRET": SECRETS["summarizer-agent"]},
        input=parent)
    assert result.exit_code == 0, result.stderr
    claims = decode_unverified(result.stdout.strip())[1]
    assert claims["act"] == {"sub": "summarizer-agent", "act": {"sub": "research-agent"}}


def test_wrong_secret_fails_without_echoing_it(broker: Broker, id_tokens: dict) -> None:
    wrong = "not-the-secret-9f8e7d6c5b4a"
    result = exchange(broker, "--subject-token", "-", secret=wrong, stdin=id_tokens["alice"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "invalid_client" in result.stderr
    assert wrong not in result.output and id_tokens["alice"] not in result.output


def test_secret_on_the_command_line_is_warned_about(broker: Broker, id_tokens: dict) -> None:
    result = runner.invoke(app, [
        "token", "exchange", "--broker", broker.url, "--client-id", "research-agent",
        "--resource", CRM, "--client-secret", SECRETS["research-agent"],
        "--subject-token", "-"], input=id_tokens["alice"])
    assert result.exit_code == 0, result.stderr
    assert "--client-secret on the command line is visible" in result.stderr
    assert SECRETS["research-agent"] not in result.stderr


def test_an_unknown_resource_is_invalid_target(broker: Broker, id_tokens: dict) -> None:
    result = runner.invoke(app, [
        "token", "exchange", "--broker", broker.url, "--client-id", "research-agent",
        "--resource", "http://127.0.0.1:1/nope", "--subject-token", "-"],
        env={"AGENT_BROKER_CLIENT_SECRET": SECRETS["research-agent"]}, input=id_tokens["alice"])
    assert result.exit_code == 1 and "invalid_target" in result.stderr


def test_missing_subject_token_is_a_usage_error(broker: Broker) -> None:
    result = exchange(broker)
    assert result.exit_code == 2 and "no subject token" in result.stderr


def test_inspect_decodes_without_verifying(broker: Broker, id_tokens: dict) -> None:
    token = exchange(broker, "--subject-token", "-", stdin=id_tokens["alice"]).stdout.strip()
    result = runner.invoke(app, ["token", "inspect", token])
    assert result.exit_code == 0
    assert "NOT VERIFIED" in result.stderr
    shown = json.loads(result.stdout)
    assert shown["verified"] is False and shown["claims"]["sub"] == "alice"
    assert shown["header"]["typ"] == "at+jwt" and shown["expires_in"] > 0
    bad = runner.invoke(app, ["token", "inspect", "not-a-jwt"])
    assert bad.exit_code == 2 and "not a JWT" in bad.stderr


def test_dpop_key_file_is_created_once_and_binds_the_token(broker: Broker, id_tokens: dict,
                                                           tmp_path: Path) -> None:
    key_file = tmp_path / "agent-dpop.pem"
    tokens = []
    for _ in range(2):
        result = exchange(broker, "--scope", "crm:read", "--subject-token", "-", "--json",
                          "--dpop-key", str(key_file), stdin=id_tokens["alice"])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["token_type"] == "DPoP"
        tokens.append(json.loads(result.stdout)["access_token"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = DPoPKey.from_pem(key_file.read_bytes())
    assert [decode_unverified(t)[1]["cnf"] for t in tokens] == [{"jkt": key.thumbprint}] * 2
    made = runner.invoke(app, ["token", "proof", "--dpop-key", str(key_file), "--url", CRM,
                               "--token", "-"], input=tokens[0])
    assert made.exit_code == 0, made.stderr
    accepted = validate_proof(made.stdout.strip(), method="POST", uri=CRM, now=time.time(),
                              window=60, access_token=tokens[0])
    assert accepted.jkt == key.thumbprint
