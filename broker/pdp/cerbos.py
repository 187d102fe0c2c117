"""The Cerbos policy decision point: which scopes may this user delegate to this agent?

One CheckResources per exchange (contract §6): the principal is the user, one resource of
kind `delegated_scope` per candidate scope, action `delegate`. Requests are chunked at the
PDP's per-request limit and the chunks sent concurrently. A timeout or transport error
raises `DependencyUnavailable`: the grant then mints nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from cerbos.effect.v1 import effect_pb2
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.sdk.grpc.client import AsyncCerbosClient
from google.protobuf import struct_pb2

from broker.errors import DependencyUnavailable
from broker.ports import DelegationQuestion

RESOURCE_KIND = "delegated_scope"
ADMIN_KIND = "broker_admin"
ACTION = "delegate"
BASE_ROLE = "user"
"""Every authenticated human has this Cerbos role besides the upstream ones."""

# Cerbos rejects role names outside this shape; an odd upstream role must not fail the request.
_ROLE = re.compile(r"^[A-Za-z][\w@.\-/]*(:[A-Za-z][\w@.\-/]*)*$")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """A human at the admin API or console, from a verified upstream token."""

    subject: str
    roles: tuple[str, ...]
    attr: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdminCheck:
    """One question about an admin action; resource ids must be unique within a request."""

    action: str
    resource_id: str
    attr: Mapping[str, Any] = field(default_factory=dict)


def to_value(data: Any) -> struct_pb2.Value:
    """JSON data as a protobuf `Value`, set by `Struct`'s own item setter: the Value
    `json_format.ParseDict` makes, without its generic descriptor walk (which was most of
    building a CheckResources request: ~40 µs an exchange). What JSON cannot hold raises
    TypeError or ValueError."""
    holder = struct_pb2.Struct()
    holder["v"] = data
    return holder.fields["v"]


def principal_roles(roles: Sequence[str]) -> list[str]:
    """A human's Cerbos roles: their upstream roles that Cerbos can name, plus `user`."""
    return [r for r in dict.fromkeys((*roles, BASE_ROLE)) if _ROLE.match(r)]


def delegation_attr(question: DelegationQuestion) -> dict[str, Any]:
    """What every candidate scope's resource carries, besides its own `scope`."""
    return {"agent": question.agent, "resource": question.resource,
            "depth": len(question.actors), "actors": list(question.actors)}


def build_principal(subject: str, roles: Sequence[str],
                    attr: Mapping[str, Any]) -> engine_pb2.Principal:
    return engine_pb2.Principal(id=subject, roles=principal_roles(roles), attr=_to_values(attr))


ResourceEntry = request_pb2.CheckResourcesRequest.ResourceEntry


def build_resources(question: DelegationQuestion) -> list[ResourceEntry]:
    common = {key: to_value(value) for key, value in delegation_attr(question).items()}
    return [
        ResourceEntry(
            actions=[ACTION],
            resource=engine_pb2.Resource(
                kind=RESOURCE_KIND, id=scope, attr={**common, "scope": to_value(scope)},
            ),
        )
        for scope in question.scopes
    ]


def _to_values(attr: Mapping[str, Any]) -> dict[str, struct_pb2.Value]:
    """Claims are JSON already; drop anything protobuf's Struct cannot carry."""
    out = {}
    for key, value in attr.items():
        try:
            out[key] = to_value(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int past a double
            continue
    return out


class CerbosPolicyPoint:
    def __init__(self, address: str, *, timeout_ms: int, tls: bool = False,
                 max_resources_per_request: int = 50) -> None:
        self._timeout = timeout_ms / 1000
        self._chunk = max_resources_per_request
        # Our own deadline (asyncio.timeout in _call), not the SDK's `timeout_secs`: the SDK
        # writes it into the gRPC service config as "0.5s", which fails every call at once.
        # Reconnect backoff capped at 1 s (gRPC's default grows to 120 s): when the PDP comes
        # back, exchanges resume within a second instead of staying 503 for minutes.
        self._client = AsyncCerbosClient(address, tls_verify=tls, channel_options={
            "grpc.initial_reconnect_backoff_ms": 100,
            "grpc.min_reconnect_backoff_ms": 100,
            "grpc.max_reconnect_backoff_ms": 1000,
        })

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]

    async def delegable_scopes(self, question: DelegationQuestion) -> frozenset[str]:
        principal = build_principal(question.subject, question.roles, question.principal_attr)
        entries = build_resources(question)
        chunks = [entries[i : i + self._chunk] for i in range(0, len(entries), self._chunk)]
        responses = await self._call(
            asyncio.gather(*(self._client.check_resources(principal, c, question.request_id)
                             for c in chunks))
        )
        allowed = set()
        for response in responses:
            for result in response.results:
                if result.actions.get(ACTION) == effect_pb2.EFFECT_ALLOW:
                    allowed.add(result.resource.id)
        return frozenset(allowed)

    async def check_admin(self, principal: AdminPrincipal,
                          checks: Sequence[AdminCheck]) -> list[bool]:
        """One CheckResources for an admin request: is each (resource, action) allowed?"""
        entries = [
            ResourceEntry(actions=[c.action], resource=engine_pb2.Resource(
                kind=ADMIN_KIND, id=c.resource_id, attr=_to_values(c.attr)))
            for c in checks
        ]
        cerbos_principal = build_principal(principal.subject, principal.roles, principal.attr)
        response = await self._call(self._client.check_resources(cerbos_principal, entries))
        by_id = {}
        for result in response.results:
            by_id[result.resource.id] = result.actions
        return [by_id.get(c.resource_id, {}).get(c.action) == effect_pb2.EFFECT_ALLOW
                for c in checks]

    async def ping(self) -> None:
        await self._call(self._client.server_info())

    async def _call(self, op: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except grpc.aio.AioRpcError as exc:
            log.warning("cerbos call failed: %s", exc.code().name)
            raise DependencyUnavailable("cerbos unavailable") from None
        except (grpc.RpcError, TimeoutError, OSError) as exc:
            log.warning("cerbos did not answer: %s", type(exc).__name__)
            raise DependencyUnavailable("cerbos unavailable") from None
