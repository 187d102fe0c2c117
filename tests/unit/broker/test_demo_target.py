"""`agent-broker demo` finds the stack in the run dir: no flags after `make run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.demo.agent import Outcome
from broker.demo.target import StackNotReady, protected_resource_metadata_url, resolve_target
from broker.dev import DevLayout, DevPorts
from broker.dev.config import RESEARCH_AGENT, SUMMARIZER_AGENT, ensure_dev_config
from tests.support.services import REPO_ROOT

PORTS = DevPorts(broker=18400, mcp=18401, idp=18402, cerbos_http=13592, cerbos_grpc=13593,
                 redis=16380)


def test_urls_audiences_and_secrets_come_from_the_generated_dev_config(tmp_path: Path) -> None:
    layout = DevLayout.create(REPO_ROOT, run_dir=tmp_path / "run", ports=PORTS)
    config = ensure_dev_config(layout)

    target = resolve_target(layout.run_dir)

    assert (target.broker, target.mcp, target.idp) == (layout.broker_url, layout.mcp_url,
                                                      layout.idp_url)
    assert (target.host_client, target.admin_audience) == ("agent-host", "agent-broker-console")
    assert target.secret(RESEARCH_AGENT) == config.secrets[RESEARCH_AGENT]
    assert target.auth_methods == {RESEARCH_AGENT: "client_secret_basic",
                                   SUMMARIZER_AGENT: "client_secret_post"}
    overridden = resolve_target(layout.run_dir, broker="http://b.test/", idp="http://i.test")
    assert (overridden.broker, overridden.idp, overridden.mcp) == ("http://b.test",
                                                                   "http://i.test",
                                                                   layout.mcp_url)


def test_a_missing_run_dir_says_to_run_make_run_first(tmp_path: Path) -> None:
    with pytest.raises(StackNotReady, match="Run `make run` first"):
        resolve_target(tmp_path / "none")


def test_a_missing_secret_says_how_to_get_new_ones(tmp_path: Path) -> None:
    layout = DevLayout.create(REPO_ROOT, run_dir=tmp_path / "run", ports=PORTS)
    ensure_dev_config(layout)
    layout.secrets_file.write_text("{}")

    with pytest.raises(StackNotReady) as raised:
        resolve_target(layout.run_dir).secret(RESEARCH_AGENT)
    assert f"delete {layout.config_file} and restart `make run`" in str(raised.value)


@pytest.mark.parametrize(("resource", "metadata"), [
    ("http://127.0.0.1:8401/mcp",
     "http://127.0.0.1:8401/.well-known/oauth-protected-resource/mcp"),
    ("http://h.test", "http://h.test/.well-known/oauth-protected-resource"),
])
def test_the_protected_resource_metadata_url_follows_rfc_9728(resource: str,
                                                             metadata: str) -> None:
    assert protected_resource_metadata_url(resource) == metadata


def test_a_challenge_parameter_is_read_from_www_authenticate() -> None:
    outcome = Outcome(False, "HTTP 403", 403,
                      'Bearer error="insufficient_scope", scope="crm:write", '
                      'resource_metadata="http://x/.well-known/oauth-protected-resource/mcp"')
    assert outcome.challenge_param("error") == "insufficient_scope"
    assert outcome.challenge_param("scope") == "crm:write"
    assert outcome.challenge_param("realm") is None
