"""deploy/compose.yaml: valid against the Compose Specification, and the stack the contract wants.

The schema is the compose-spec project's `schema/compose-spec.json` as vendored by
check-jsonschema (a dev dependency; PyPI), so it is pinned by that package's version.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from importlib import resources
from typing import Any

import jsonschema
import pytest

from broker.config_loading import load_settings
from broker.dev.services import DEMO_USERS
from tests.deploy.conftest import DEPLOY, REPO_ROOT, cerbos_version

# Contract §2: the local ports; Redis is 6379 inside its container.
PUBLISHED = {
    "broker": {"8400:8400"},
    "crm": {"8401:8401"},
    "idp": {"8402:8402"},
    "cerbos": {"3592:3592", "3593:3593"},
    "redis": {"6380:6379"},
}


def compose_schema() -> dict[str, Any]:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(ref.read_text(encoding="utf-8"))
    return schema


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_the_schema_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    # The schema really is applied: a misspelled key is an error.
    broken = json.loads(json.dumps(compose))
    broken["services"]["broker"]["healthchek"] = broken["services"]["broker"].pop("healthcheck")
    validator = jsonschema.validators.validator_for(compose_schema())(compose_schema())
    assert any("healthchek" in e.message for e in validator.iter_errors(broken))


def test_every_service_and_port_of_the_contract(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(PUBLISHED)
    for name, expected in PUBLISHED.items():
        ports = services[name]["ports"]
        # Loopback only: the stack carries demo secrets.
        assert all(p.startswith("127.0.0.1:") for p in ports), name
        assert {p.removeprefix("127.0.0.1:") for p in ports} == expected, name


def test_redis_persists_with_aof_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] in ("everysec", "always")
    assert options["--maxmemory-policy"] == "noeviction"
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))
    assert volume.split(":")[0] in compose["volumes"]


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d", tag), (name, image)
    assert compose["services"]["cerbos"]["image"] == f"ghcr.io/cerbos/cerbos:{cerbos_version()}"
    assert re.fullmatch(r"redis:7\.\d+\.\d+-alpine", compose["services"]["redis"]["image"])


def test_built_services_use_dockerfile_targets(compose: dict[str, Any]) -> None:
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (DEPLOY / "Dockerfile").read_text(),
                            re.MULTILINE))
    built = {n: s["build"] for n, s in compose["services"].items() if "build" in s}
    assert set(built) == {"broker", "crm", "idp"}
    for name, build in built.items():
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == \
            DEPLOY / "Dockerfile", name
        assert build["target"] in stages, name


def test_startup_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
    assert services["broker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["broker"]["depends_on"]["cerbos"]["condition"] == "service_healthy"
    assert services["crm"]["depends_on"]["broker"]["condition"] == "service_healthy"
    # The broker counts as healthy when it is ready: Redis and Cerbos reachable.
    assert "/readyz" in " ".join(services["broker"]["healthcheck"]["test"])


def test_broker_gets_config_secrets_and_keys(compose: dict[str, Any]) -> None:
    broker = compose["services"]["broker"]
    assert broker["environment"]["BROKER_SECRETS_DIR"] == "/run/secrets"
    config = broker["environment"]["BROKER_CONFIG"]
    assert f"./compose/broker.yaml:{config}:ro" in broker["volumes"]
    keys_volume = next(v for v in broker["volumes"] if v.endswith(":/var/lib/agent-broker/keys"))
    assert keys_volume.split(":")[0] in compose["volumes"]
    for secret in broker["secrets"]:
        assert (DEPLOY / compose["secrets"][secret]["file"]).is_file(), secret


def test_cerbos_serves_the_repository_policies(compose: dict[str, Any]) -> None:
    cerbos = compose["services"]["cerbos"]
    assert "../policies:/policies:ro" in cerbos["volumes"]
    assert (DEPLOY / "../policies").resolve().is_dir()
    config = cerbos["environment"]["CERBOS_CONFIG"]
    assert f"./compose/cerbos.yaml:{config}:ro" in cerbos["volumes"]


def _crm_args(compose: dict[str, Any]) -> dict[str, str]:
    args = [a.split("=", 1) for a in compose["services"]["crm"]["command"]]
    return {k: v for k, v in args}


def test_services_agree_on_names(compose: dict[str, Any],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The broker's issuer, the MCP resource URI and the in-network addresses must match what
    # the demo MCP server is started with, or every token is refused.
    monkeypatch.setenv("BROKER_SECRETS_DIR", str(DEPLOY / "compose" / "secrets"))
    settings = load_settings(DEPLOY / "compose" / "broker.yaml")
    crm = _crm_args(compose)
    assert crm["--broker"] == settings.issuer
    assert crm["--resource"] in {r.uri for r in settings.resources}
    assert crm["--cerbos"] == settings.cerbos.address
    assert crm["--redis-url"] == settings.redis_url
    hosts = {settings.cerbos.address.split(":")[0], settings.redis_url.split("/")[2].split(":")[0],
             crm["--broker"].split("/")[2].split(":")[0]}
    assert hosts <= set(compose["services"])


def test_dev_idp_has_the_dev_stacks_users(compose: dict[str, Any]) -> None:
    command = compose["services"]["idp"]["command"]
    users = {}
    for flag, value in zip(command[::2], command[1::2], strict=True):
        assert flag == "--user-claims"
        claims = json.loads(value)
        users[claims.pop("sub")] = claims
    assert users == DEMO_USERS


def test_healthchecks_are_well_formed(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        if test is None:
            continue
        if test[0] == "CMD" and test[1] == "python":
            compile(test[3], f"{name} healthcheck", "exec")  # python -c CODE
        elif test[0] == "CMD-SHELL":
            shlex.split(test[1])


def test_built_images_are_tagged_with_the_project_version(compose: dict[str, Any]) -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["image"].endswith(f":{version}"), name
