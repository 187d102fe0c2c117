"""Every YAML file under deploy/ parses; the broker and Cerbos configurations it ships are valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from broker.config_loading import load_settings
from broker.dev.config import DEV_CLIENTS, render_config
from broker.dev.layout import DevLayout
from tests.deploy.conftest import DEPLOY, K8S, OVERLAY, POLICY_COPY, REPO_ROOT, load_yaml

DEV_TEMPLATE = DEPLOY / "dev" / "broker.yaml"
# Not the git-ignored policy copy: policies/ has its own checks (`cerbos compile`).
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml")
                    and not p.is_relative_to(POLICY_COPY))


def test_deploy_has_yaml_files() -> None:
    # Guards the parametrization below against a moved folder that would test nothing.
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "compose/broker.yaml", "k8s/base/kustomization.yaml",
            "k8s/overlays/example/kustomization.yaml", "k8s/redis-values.yaml"} <= names


def _text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path == DEV_TEMPLATE:
        # A template with ${placeholders}: parse what `agent-broker dev` renders from it.
        hashes = dict.fromkeys(DEV_CLIENTS, "scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA")
        text = render_config(DevLayout.create(REPO_ROOT), hashes, text)
    return text


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(_text(path)))
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs if doc is not None)


def test_compose_broker_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    # What `agent-broker check` says inside the broker container, given the compose secret.
    monkeypatch.setenv("BROKER_SECRETS_DIR", str(DEPLOY / "compose" / "secrets"))
    settings = load_settings(DEPLOY / "compose" / "broker.yaml")
    assert settings.admin.console is not None
    assert settings.admin.console.client_secret is not None  # from the secret, not the YAML
    assert settings.signing.keys_file == Path("/var/lib/agent-broker/keys/keys.json")


def _deployment_env(name: str) -> dict[str, str]:
    """The literal environment of a base Deployment's main container ($(VAR) ones left out)."""
    docs = yaml.safe_load_all((K8S / "base" / f"{name}-deployment.yaml").read_text("utf-8"))
    (deployment,) = docs
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]
            if "value" in e and "$(" not in e["value"]}


def test_k8s_broker_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The overlay's broker.yaml with the Deployment's environment and a well-formed secret
    # (the committed *.example placeholders are deliberately not valid).
    env = _deployment_env("broker")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "broker_admin").write_text(json.dumps(
        {"console": {"client_secret": "s" * 32, "session_secret": "t" * 43}}))
    monkeypatch.setenv("BROKER_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER_REDIS_URL", "redis://:pw@redis-master:6379/0")
    settings = load_settings(OVERLAY / "broker.yaml")
    assert str(settings.signing.keys_file) == env["BROKER_SIGNING__KEYS_FILE"]
    assert settings.cerbos.address == "127.0.0.1:3593"
    assert settings.issuer.startswith("https://")


def test_example_secrets_are_not_usable() -> None:
    # A placeholder copied as is must make the broker refuse to start, never run with it.
    secrets = OVERLAY / "secrets"
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads((secrets / "keys.json.example").read_text())
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads((secrets / "broker_admin.example").read_text())


CERBOS_CONFIGS = {
    "compose": DEPLOY / "compose" / "cerbos.yaml",
    "k8s": K8S / "base" / "cerbos" / "config.yaml",
}


@pytest.mark.parametrize("name", sorted(CERBOS_CONFIGS))
def test_cerbos_configs_decide_like_the_dev_stack(name: str) -> None:
    # Only where it listens and where policies live may differ from the dev stack's PDP.
    dev = load_yaml(REPO_ROOT / "deploy" / "cerbos" / "config.yaml")
    other = load_yaml(CERBOS_CONFIGS[name])
    for section in ("schema", "audit", "telemetry"):
        assert other[section] == dev[section], section
    assert other["storage"]["driver"] == dev["storage"]["driver"] == "disk"
    assert other["storage"]["disk"]["directory"] == "/policies"
    assert set(other) == set(dev)


def test_k8s_cerbos_listens_on_loopback_only() -> None:
    server = load_yaml(CERBOS_CONFIGS["k8s"])["server"]
    assert server == {"httpListenAddr": "127.0.0.1:3592", "grpcListenAddr": "127.0.0.1:3593"}
