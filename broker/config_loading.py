"""Reading the broker's configuration: YAML at a path (or `BROKER_CONFIG`), environment
overrides and secrets files (pydantic-settings), every problem reported at once by its path.
The settings themselves, and their validation, are in `broker.config`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from broker.config import BrokerSettings


class ConfigError(Exception):
    """Every problem in a configuration, each prefixed by its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("ClientSecretAuth", "PrivateKeyJwtAuth") or part.startswith(
            ("client_secret", "private_key_jwt")
        ):
            continue  # the discriminated union's branch name says nothing to a user
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def load_settings(path: str | os.PathLike[str] | None = None) -> BrokerSettings:
    """Load YAML at `path` (or `BROKER_CONFIG`), apply env overrides, validate everything."""
    path = path or os.environ.get("BROKER_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML ({exc})"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"{path}: the top level must be a mapping"])
        raw = loaded or {}
    secrets_dir = os.environ.get("BROKER_SECRETS_DIR")
    try:
        return BrokerSettings(**raw, _secrets_dir=secrets_dir)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            if err["loc"] == ():
                problems += message.split("; ")
            else:
                problems.append(f"{_path(err['loc'])}: {message}")
        raise ConfigError(problems) from None
