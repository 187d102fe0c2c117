"""`cerbos.address`: host:port is the gRPC API as before; an http(s) URL selects the REST API;
anything else is refused at start, by name."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from broker.config import BrokerSettings, CerbosSettings
from broker.config_loading import ConfigError, load_settings
from broker.http.services import _policy_point
from broker.pdp.cerbos import CerbosPolicyPoint
from broker.pdp.cerbos_http import CerbosHttpPolicyPoint


@pytest.mark.parametrize("address", ["127.0.0.1:3593", "cerbos:3593", "localhost:1",
                                     "unix:/run/cerbos.sock"])
def test_grpc_targets_are_unchanged(address: str) -> None:
    settings = CerbosSettings(address=address)
    assert settings.address == address
    assert not settings.rest


def test_the_default_is_grpc() -> None:
    assert CerbosSettings().address == "127.0.0.1:3593"
    assert not CerbosSettings().rest


@pytest.mark.parametrize(("address", "stored"), [
    ("http://127.0.0.1:3592", "http://127.0.0.1:3592"),
    ("https://cerbos.internal:3592", "https://cerbos.internal:3592"),
    ("http://cerbos:3592/", "http://cerbos:3592"),
    ("http://[::1]:3592", "http://[::1]:3592"),
    ("https://cerbos.internal", "https://cerbos.internal"),
])
def test_http_urls_select_rest(address: str, stored: str) -> None:
    settings = CerbosSettings(address=address)
    assert settings.address == stored
    assert settings.rest


@pytest.mark.parametrize(("address", "message"), [
    ("grpc://127.0.0.1:3593", "must be an absolute http(s) URI"),
    ("ftp://cerbos:3592", "must be an absolute http(s) URI"),
    ("http://cerbos:3592/api", "must not contain a path"),
    ("http://cerbos:3592/api/check/resources", "must not contain a path"),
    ("http://cerbos:3592?x=1", "without credentials or query"),
    ("http://cerbos:3592/#frag", "must not contain a fragment"),
    ("http://cerbos:3592?", "without credentials or query"),
    ("http://user:pw@cerbos:3592", "without credentials"),
    ("http://:3592", "without credentials"),
    ("http://cerbos:notaport", "invalid port"),
    ("http://cerbos:99999", "invalid port"),
])
def test_other_urls_are_refused_by_name(address: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings_with({"cerbos": {"address": address}})
    assert any(p.startswith("cerbos.address: ") and message in p
               for p in caught.value.problems), caught.value.problems


def test_tls_is_the_grpc_switch_not_http() -> None:
    with pytest.raises(ConfigError, match="use an https:// address"):
        load_settings_with({"cerbos": {"address": "http://cerbos:3592", "tls": True}})
    assert CerbosSettings(address="https://cerbos:3592", tls=True).rest
    assert CerbosSettings(address="cerbos:3593", tls=True).tls


def test_the_rest_connection_limit_is_for_the_rest_api_only() -> None:
    with pytest.raises(ConfigError, match="rest_max_connections` is for the REST API"):
        load_settings_with({"cerbos": {"address": "cerbos:3593", "rest_max_connections": 4}})
    with pytest.raises(ConfigError, match=r"cerbos\.rest_max_connections"):
        load_settings_with({"cerbos": {"address": "http://cerbos:3592",
                                       "rest_max_connections": 0}})
    assert CerbosSettings(address="http://cerbos:3592", rest_max_connections=4
                          ).rest_max_connections == 4
    assert CerbosSettings(address="cerbos:3593").rest_max_connections == 16  # unset: fine


def test_environment_selects_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_CERBOS__ADDRESS", "http://127.0.0.1:3592")
    assert load_settings_with({}).cerbos.rest


@pytest.mark.parametrize(("address", "kind"), [("127.0.0.1:3593", CerbosPolicyPoint),
                                               ("http://127.0.0.1:3592", CerbosHttpPolicyPoint)])
async def test_the_address_picks_the_policy_point(address: str, kind: type) -> None:
    point = _policy_point(BrokerSettings(cerbos={"address": address}))
    try:
        assert type(point) is kind
    finally:
        await point.close()


def load_settings_with(raw: dict[str, object]) -> BrokerSettings:
    """Through `load_settings`, as `agent-broker check` and `serve` do."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "broker.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_settings(path)
