"""CheckResources as JSON for Cerbos's REST API (`POST /api/check/resources`): pure functions.

The request is the protobuf JSON mapping of what `broker.pdp.cerbos` sends over gRPC, built
by the same rules (roles, base role, resource attributes): a test parses one into the other
and compares bytes. Attributes a JSON document cannot carry are dropped, as the gRPC builder
drops what protobuf cannot: besides non-JSON types, NaN and infinities (no JSON number) and
strings that are not valid Unicode (lone surrogates, which Cerbos would refuse).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from broker.pdp.cerbos import (
    ACTION,
    ADMIN_KIND,
    RESOURCE_KIND,
    AdminCheck,
    delegation_attr,
    principal_roles,
)
from broker.ports import DelegationQuestion

CHECK_PATH = "/api/check/resources"
HEALTH_PATH = "/_cerbos/health"
ALLOW = "EFFECT_ALLOW"

Json = dict[str, Any]


class MalformedResponse(ValueError):
    """Cerbos answered 200 with something that is not a CheckResources response."""


def principal(subject: str, roles: Sequence[str], attr: Mapping[str, Any]) -> Json:
    out: Json = {"id": subject, "roles": principal_roles(roles)}
    if carried := json_attr(attr):
        out["attr"] = carried
    return out


def delegation_resources(question: DelegationQuestion) -> list[Json]:
    common = json_attr(delegation_attr(question))
    return [
        {"actions": [ACTION],
         "resource": {"kind": RESOURCE_KIND, "id": scope, "attr": {**common, "scope": scope}}}
        for scope in question.scopes
    ]


def admin_resources(checks: Sequence[AdminCheck]) -> list[Json]:
    out = []
    for check in checks:
        resource: Json = {"kind": ADMIN_KIND, "id": check.resource_id}
        if carried := json_attr(check.attr):
            resource["attr"] = carried
        out.append({"actions": [check.action], "resource": resource})
    return out


def request_body(principal: Json, resources: list[Json], request_id: str) -> bytes:
    """Compact UTF-8 JSON; every string in it went through `json_attr` or is ours."""
    doc = {"requestId": request_id, "principal": principal, "resources": resources}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def read_effects(body: bytes) -> dict[str, Mapping[str, str]]:
    """resource id -> {action: effect} from a CheckResources response; MalformedResponse if
    it is not one. A resource missing from the answer is simply absent (the caller denies)."""
    try:
        doc = json.loads(body)
        effects: dict[str, Mapping[str, str]] = {}
        for result in doc.get("results", []):
            resource_id = result["resource"]["id"]
            actions = result.get("actions", {})
            if not isinstance(resource_id, str) or not isinstance(actions, dict):
                raise MalformedResponse("unexpected result shape")
            effects[resource_id] = actions
        return effects
    except MalformedResponse:
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        raise MalformedResponse("not a CheckResources response") from None


def json_attr(attr: Mapping[str, Any]) -> Json:
    """The attributes JSON (and Cerbos) can carry; the others are dropped, not the request."""
    return {key: value for key, value in attr.items() if _carriable(value)}


def _carriable(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.isascii() or _valid_unicode(value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return _fits_double(value)
    if isinstance(value, list | tuple):
        return all(_carriable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _carriable(k) and _carriable(v)
                   for k, v in value.items())
    return False


def _valid_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _fits_double(number: int) -> bool:
    # Cerbos reads every JSON number as a double, as protobuf's Value holds it
    try:
        float(number)
    except OverflowError:
        return False
    return True
