"""The broker image installs the project's runtime dependencies only (no dev extras): every
third-party module that the broker, mcp_plugin and the demo server import must come from them.

In the dev venv a module can be present only because a dev tool pulled it in, so the code runs
here and fails in the container. This imports every module of the three packages in a fresh
interpreter and checks each imported distribution against the dependency closure of
`[project].dependencies` in pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.deploy.conftest import REPO_ROOT

PACKAGES = ("broker", "mcp_plugin", "agent_broker_demo")

IMPORT_ALL = """
import importlib, json, pkgutil, sys
for name in {packages!r}:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted({{m.partition(".")[0] for m in sys.modules}})))
"""


def _closure(requirements: list[str]) -> set[str]:
    """Normalized names of the distributions these requirements install, transitively."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = _normalize(requirement.name)
        extras = requirement.extras
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for child in metadata.requires(requirement.name) or []:
            child_req = Requirement(child)
            if child_req.marker is None:
                todo.append((child_req, ""))
            else:
                # Installed when the marker holds with no extra, or with one we asked for.
                for wanted in ("", *extras):
                    if child_req.marker.evaluate({"extra": wanted}):
                        todo.append((child_req, wanted))
                        break
    return {key.partition("[")[0] for key in seen}


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_runtime_imports_are_runtime_dependencies() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    allowed = _closure(project["project"]["dependencies"])
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL.format(packages=PACKAGES)],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout.splitlines()[-1])
    providers = metadata.packages_distributions()
    missing = {}
    for module in modules:
        if module in sys.stdlib_module_names or module in PACKAGES or module not in providers:
            continue
        dists = {_normalize(d) for d in providers[module]}
        if not dists & allowed:
            missing[module] = sorted(dists)
    assert not missing, (
        f"imported at run time but not installed by [project].dependencies: {missing}; "
        "add them to pyproject.toml's dependencies, or the container image breaks")
