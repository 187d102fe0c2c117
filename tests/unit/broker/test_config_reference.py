"""docs/configuration.md is generated from the settings model and must match it."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from broker.config import BrokerSettings
from broker.config_loading import load_settings
from broker.config_reference import _models, render, sections
from tests.support.services import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "configuration.md"


def test_the_page_is_up_to_date() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run "
        "`.venv/bin/python scripts/gen_config_reference.py` and commit the result")


def _every_key(model: type[BaseModel], path: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        keys.append(key)
        child = f"{key}[]" if str(field.annotation).startswith("list[") else key
        for sub in _models(field.annotation):
            keys += _every_key(sub, child)
    return keys


def test_every_field_of_every_model_has_a_row() -> None:
    rows = {row.key.strip("`") for section in sections() for row in section.rows}
    assert set(_every_key(BrokerSettings)) <= rows
    assert "agents[].auth.secret_hash" in rows and "agents[].auth.jwks_uri" in rows


def test_documented_variables_are_the_ones_pydantic_settings_reads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    page = render()
    for name in ("BROKER_CERBOS__TIMEOUT_MS", "BROKER_TOKEN_TTL_SECONDS",
                 "BROKER_SIGNING__ALGORITHM", "BROKER_ADMIN__AUDIENCES"):
        assert f"`{name}`" in page
    monkeypatch.delenv("BROKER_CONFIG", raising=False)
    monkeypatch.setenv("BROKER_CERBOS__TIMEOUT_MS", "250")
    monkeypatch.setenv("BROKER_TOKEN_TTL_SECONDS", "120")
    monkeypatch.setenv("BROKER_SIGNING__ALGORITHM", "ES256")
    monkeypatch.setenv("BROKER_ADMIN__AUDIENCES", '["console"]')
    settings = load_settings()
    assert (settings.cerbos.timeout_ms, settings.token_ttl_seconds,
            settings.signing.algorithm, settings.admin.audiences) == (250, 120, "ES256",
                                                                      ["console"])


def test_list_items_have_no_variable_of_their_own() -> None:
    row = next(r for s in sections() for r in s.rows if r.key == "`agents[].scopes`")
    assert row.env == "—"
    assert re.search(r"\| `agents` \| .* \| `BROKER_AGENTS` \(JSON\) \|", render())
