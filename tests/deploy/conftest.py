"""Shared inputs of the deploy/ checks: static files only, no Docker and no cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAY = K8S / "overlays" / "example"
POLICY_COPY = K8S / "base" / "policies"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def cerbos_version() -> str:
    """The Cerbos the project pins (scripts/setup.sh): every image must run the same one."""
    match = re.search(r'^CERBOS_VERSION="([^"]+)"', (REPO_ROOT / "scripts" / "setup.sh")
                      .read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "scripts/setup.sh no longer sets CERBOS_VERSION"
    return match.group(1)


def resolve_k8s_file(path: Path) -> Path:
    """Where a file the overlay's generators read really is.

    The policy copy (deploy/k8s/sync-policies.sh) mirrors policies/: read the original, so a
    stale or absent local copy changes nothing. An overlay's real secrets are git-ignored, so
    CI builds with their committed `.example` placeholders.
    """
    if path.is_relative_to(POLICY_COPY):
        return REPO_ROOT / "policies" / path.relative_to(POLICY_COPY)
    if path.exists():
        return path
    if path.parent.name == "secrets":
        example = path.with_name(path.name + ".example")
        if example.exists():
            return example
    return path


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(DEPLOY / "compose.yaml")
    return data


@pytest.fixture(scope="session")
def k8s() -> kustomize.Built:
    return kustomize.build(OVERLAY, resolve_k8s_file)
