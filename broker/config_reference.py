"""The configuration reference (docs/configuration.md), generated from the settings model.

Pure: `render()` turns `BrokerSettings` and its nested models into markdown, one section per
model, one row per field (type with its limits, default, environment variable, docstring).
Nothing is written by hand, so the page cannot drift from the code: a test regenerates it and
compares (`scripts/gen_config_reference.py` rewrites it).

Field docs are the attribute docstrings in broker/config.py (the string right below a field),
read from the source with `ast`, because pydantic keeps them only with
`use_attribute_docstrings`, which would change the models' JSON schema for everyone.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import textwrap
import types
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from broker.config import BrokerSettings

ENV_PREFIX = "BROKER_"
ENV_DELIMITER = "__"
GENERATOR = "scripts/gen_config_reference.py"
_SCALARS = {str: "string", int: "integer", bool: "boolean", float: "number", Path: "path",
            SecretStr: "secret string", Any: "any"}


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    env: str
    doc: str


@dataclass(frozen=True)
class Section:
    path: str
    """YAML path of the model: `` (top level), `cerbos`, `agents[]`, `agents[].auth`."""
    note: str
    doc: str
    rows: list[Row]


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models inside an annotation: X, X | None, list[X], X | Y (a tagged union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (list, Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a.value if isinstance(a, Enum) else a) for a in args)
    if origin in (Union, types.UnionType):
        # a tagged union of models is one mapping whose `method` picks the kind
        return " \\| ".join(dict.fromkeys(type_name(a) for a in args))
    if origin is list:
        inner = type_name(args[0])
        return f"list of ({inner})" if "|" in inner else f"list of {inner}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _limits(field: FieldInfo) -> list[str]:
    out: list[str] = []
    for item in field.metadata:
        if isinstance(item, Ge):
            out.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            out.append(f"> {item.gt}")
        elif isinstance(item, Le):
            out.append(f"≤ {item.le}")
        elif isinstance(item, Lt):
            out.append(f"< {item.lt}")
        elif isinstance(item, MinLen):
            out.append(f"at least {item.min_length}")
        elif isinstance(item, MaxLen):
            out.append(f"at most {item.max_length} long")
        elif getattr(item, "pattern", None):
            out.append(f"matches `{item.pattern}`")
    return out


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value)}`"


@cache
def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the docstring written right below it, for `model` and its bases."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):  # defined where no source is (pydantic internals)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _env(env_path: list[str] | None, name: str, annotation: Any) -> str:
    if env_path is None:
        return "—"  # inside a list: only the whole list can come from the environment
    name = ENV_PREFIX + ENV_DELIMITER.join([*env_path, name]).upper()
    structured = get_origin(annotation) in (list, dict) or bool(_models(annotation))
    return f"`{name}`" + (" (JSON)" if structured else "")


def sections(model: type[BaseModel] = BrokerSettings) -> list[Section]:
    """Every model reachable from `model`, depth first, in field order."""
    out: list[Section] = []
    _walk(model, "", [], "", out)
    return out


def _walk(model: type[BaseModel], path: str, env_path: list[str] | None, note: str,
          out: list[Section]) -> None:
    docs = attribute_docs(model)
    rows: list[Row] = []
    nested: list[tuple[type[BaseModel], str, list[str] | None, str]] = []
    for name, field in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        models = _models(field.annotation)
        doc = docs.get(name) or field.description or ""
        in_list = get_origin(field.annotation) is list
        child_path = f"{key}[]" if in_list else key
        if not doc and models:
            doc = inspect.cleandoc(models[0].__doc__ or "") if len(models) == 1 else ""
            doc = doc or f"See `{child_path}` below."
        limits = _limits(field)
        shown = type_name(field.annotation) + (f" ({', '.join(limits)})" if limits else "")
        rows.append(Row(f"`{key}`", shown, _default(field),
                        _env(env_path, name, field.annotation), _one_line(doc)))
        child_env = None if env_path is None or in_list else [*env_path, name]
        for sub in models:
            tag = sub.model_fields.get("method") if len(models) > 1 else None
            label = f"when `method` is {type_name(tag.annotation)}" if tag else ""
            nested.append((sub, child_path, child_env, label))
    out.append(Section(path, note, inspect.cleandoc(model.__doc__ or ""), rows))
    for sub, sub_path, sub_env, label in nested:
        _walk(sub, sub_path, sub_env, label, out)


HEADER = f"""# Configuration reference

<!-- Generated by {GENERATOR} from broker/config.py: do not edit by hand. -->

One YAML file (`agent-broker serve --config F`, or `BROKER_CONFIG`), validated once at start:
`agent-broker check --config F` prints every problem with its path. Every setting can also come
from the environment, `{ENV_PREFIX}<SECTION>{ENV_DELIMITER}<KEY>` in upper case
(`BROKER_CERBOS__TIMEOUT_MS=250`), which wins over the file; lists and mappings take JSON
(`BROKER_ADMIN__AUDIENCES='["agent-broker-console"]'`). A field inside a list item
(`agents[].scopes`) has no variable of its own: set the whole list. With
`BROKER_SECRETS_DIR`, a file named `broker_<setting>` (a top-level name; JSON for a section)
is read as well, below the YAML file (docs/deploy.md): the way to pass secrets such as
`admin.console.client_secret`, which should never be in YAML.
"""


def render(model: type[BaseModel] = BrokerSettings) -> str:
    parts = [HEADER]
    for section in sections(model):
        title = f"`{section.path}`" if section.path else "Top level"
        parts.append(f"\n## {title}" + (f" ({section.note})" if section.note else "") + "\n")
        if section.doc and section.path:
            parts.append(f"\n{_one_line(section.doc)}\n")
        parts.append("\n| key | type | default | environment | description |\n"
                     "|---|---|---|---|---|\n")
        parts.extend(f"| {r.key} | {r.type} | {r.default} | {r.env} | {r.doc} |\n"
                     for r in section.rows)
    return "".join(parts)
