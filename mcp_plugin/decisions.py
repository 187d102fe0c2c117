"""The decision log: one JSON line per authorization check, on logger `mcp_plugin.decisions`.

Each line names who (principal, agent, actor chain, session), what (action, resource kind and
id), the effect, and where it came from (matched Cerbos policy and scope, our request id,
Cerbos's call id, or why there was no decision). Argument VALUES are never logged, only their
names. Lines are emitted at INFO; when that level is off for the logger nothing is built.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from mcp_plugin.pdp import Decision
from mcp_plugin.principal import Principal

decision_logger = logging.getLogger("mcp_plugin.decisions")


def build_record(principal: Principal | None, decision: Decision, *, probe: str | None = None
                 ) -> dict[str, Any]:
    item = decision.item
    attr: Mapping[str, Any] = principal.attr if principal is not None else {}
    record: dict[str, Any] = {
        "event": "mcp_authz_decision",
        "principal": principal.id if principal is not None else None,
        "agent": attr.get("agent"),
        "actors": attr.get("actors"),
        "session": attr.get("session"),
        "action": item.action,
        "resource_kind": item.resource.kind,
        "resource": item.resource.id,
        "effect": "allow" if decision.allowed else "deny",
        "policy": decision.policy,
        "policy_scope": decision.policy_scope,
        "request_id": decision.request_id,
        "cerbos_call_id": decision.cerbos_call_id,
    }
    arguments = item.resource.attr.get("arguments")
    if isinstance(arguments, Mapping):
        record["argument_names"] = sorted(str(name) for name in arguments)
    if decision.failure is not None:
        record["failure"] = decision.failure
    if decision.cached:
        record["cached"] = True
    if decision.validation_errors:
        record["validation_errors"] = list(decision.validation_errors)
    if probe is not None:
        record["probe"] = probe
    return record


def log_decisions(
    principal: Principal | None, decisions: Sequence[Decision], *, probe: str | None = None
) -> None:
    """Emit one line per decision. `probe` marks hypothetical checks (step-up hints)."""
    if not decision_logger.isEnabledFor(logging.INFO):
        return
    for decision in decisions:
        record = build_record(principal, decision, probe=probe)
        decision_logger.info(json.dumps(record, separators=(",", ":"), default=str))
