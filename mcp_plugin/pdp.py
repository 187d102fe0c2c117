"""Ask Cerbos (gRPC CheckResources): batched, chunked, concurrent, bounded in time, fail closed.

One call to `check` is one question per item. Items go out as CheckResources requests of at
most `max_resources_per_request` resources (Cerbos's per-request limit, 50 by default), sent
concurrently, all under one deadline. If Cerbos is unreachable, slow, or answers something
that cannot be matched to the question, every item of that call is denied and a warning is
logged: nothing is allowed without a decision.

The request is built from the generated protobufs directly (rather than through the SDK's
`check_resources`) so that `include_meta` is set and the matched policy can be logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from cerbos.effect.v1 import effect_pb2
from cerbos.engine.v1 import engine_pb2
from cerbos.request.v1 import request_pb2
from cerbos.response.v1 import response_pb2
from cerbos.svc.v1 import svc_pb2_grpc
from google.protobuf import struct_pb2

from mcp_plugin.principal import CheckItem, Principal

logger = logging.getLogger("mcp_plugin.pdp")

DEFAULT_TIMEOUT_SECONDS = 0.5
DEFAULT_MAX_RESOURCES_PER_REQUEST = 50


@dataclass(frozen=True, slots=True)
class Decision:
    item: CheckItem
    allowed: bool
    policy: str | None = None
    policy_scope: str | None = None
    request_id: str | None = None
    cerbos_call_id: str | None = None
    failure: str | None = None
    """Why there was no real decision (PDP unreachable, slow...); None when Cerbos decided."""
    validation_errors: tuple[str, ...] = ()
    cached: bool = False
    """Answered from mcp_plugin's decision cache (the ids are those of Cerbos's answer)."""


class PolicyDecisionPoint(Protocol):
    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        """One decision per item, in order. Never raises: no answer means deny."""
        ...


def _attr_map(target: Any, attr: Mapping[str, Any]) -> None:
    struct = struct_pb2.Struct()
    struct.update(attr)
    target.MergeFrom(struct.fields)


def build_principal_proto(principal: Principal) -> engine_pb2.Principal:
    proto = engine_pb2.Principal(id=principal.id, roles=list(principal.roles))
    _attr_map(proto.attr, principal.attr)
    return proto


def build_entry(item: CheckItem) -> request_pb2.CheckResourcesRequest.ResourceEntry:
    # filled in place: building a Resource and copying it into the entry costs twice as
    # much, and a 50-tool list builds 50 of these per request (issue 6's tools/list measure)
    entry = request_pb2.CheckResourcesRequest.ResourceEntry(actions=[item.action])
    entry.resource.kind = item.resource.kind
    entry.resource.id = item.resource.id
    _attr_map(entry.resource.attr, item.resource.attr)
    return entry


def read_decisions(
    items: Sequence[CheckItem], response: response_pb2.CheckResourcesResponse, request_id: str
) -> list[Decision]:
    """Match results to items by position, checking each id; anything odd is a deny."""
    if len(response.results) != len(items):
        return deny_all(items, "PDP answered a different number of results", request_id)
    decisions = []
    for item, result in zip(items, response.results, strict=True):
        if result.resource.id != item.resource.id:
            decisions.append(Decision(item, False, request_id=request_id,
                                      failure="PDP result out of order"))
            continue
        effect = result.actions.get(item.action, effect_pb2.EFFECT_DENY)
        meta = result.meta.actions.get(item.action)
        decisions.append(
            Decision(
                item=item,
                allowed=effect == effect_pb2.EFFECT_ALLOW,
                policy=meta.matched_policy or None if meta is not None else None,
                policy_scope=meta.matched_scope or None if meta is not None else None,
                request_id=request_id,
                cerbos_call_id=response.cerbos_call_id or None,
                validation_errors=tuple(
                    f"{e.path}: {e.message}" for e in result.validation_errors
                ),
            )
        )
    return decisions


def deny_all(items: Sequence[CheckItem], failure: str, request_id: str | None) -> list[Decision]:
    return [Decision(item, False, request_id=request_id, failure=failure) for item in items]


class CerbosPolicyPoint:
    """A Cerbos PDP reached over gRPC at `address` ("host:port")."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_resources_per_request: int = DEFAULT_MAX_RESOURCES_PER_REQUEST,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if max_resources_per_request < 1:
            raise ValueError("max_resources_per_request must be at least 1")
        self.address = address
        self.timeout = timeout
        self.max_resources_per_request = max_resources_per_request
        self._credentials = credentials
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: svc_pb2_grpc.CerbosServiceStub | None = None

    async def check(self, principal: Principal, items: Sequence[CheckItem]) -> list[Decision]:
        if not items:
            return []
        request_id = uuid.uuid4().hex
        size = self.max_resources_per_request
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        try:
            principal_proto = build_principal_proto(principal)
            async with asyncio.timeout(self.timeout):
                results = await asyncio.gather(
                    *(
                        self._check_chunk(principal_proto, chunk, f"{request_id}-{n}")
                        for n, chunk in enumerate(chunks)
                    )
                )
        except TimeoutError:
            return self._fail(items, f"no answer within {self.timeout * 1000:.0f} ms", request_id)
        except grpc.aio.AioRpcError as exc:
            return self._fail(items, f"gRPC {exc.code().name}: {exc.details()}", request_id)
        except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
            return self._fail(items, f"{type(exc).__name__}: {exc}", request_id)
        return [decision for chunk in results for decision in chunk]

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None
        self._loop = None

    async def _check_chunk(
        self, principal: engine_pb2.Principal, items: Sequence[CheckItem], request_id: str
    ) -> list[Decision]:
        request = request_pb2.CheckResourcesRequest(
            request_id=request_id,
            include_meta=True,
            principal=principal,
            resources=[build_entry(item) for item in items],
        )
        response = await self._client().CheckResources(request)
        return read_decisions(items, response, request_id)

    def _fail(self, items: Sequence[CheckItem], why: str, request_id: str) -> list[Decision]:
        logger.warning(
            "Cerbos at %s unavailable (%s): denying %d check(s), request %s",
            self.address, why, len(items), request_id,
        )
        return deny_all(items, f"PDP unavailable: {why}", request_id)

    def _client(self) -> svc_pb2_grpc.CerbosServiceStub:
        """A gRPC aio channel belongs to the loop it was made on: make one per loop."""
        loop = asyncio.get_running_loop()
        if self._stub is None or loop is not self._loop:
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(self.address, self._credentials)
            else:
                self._channel = grpc.aio.insecure_channel(self.address)
            self._stub = svc_pb2_grpc.CerbosServiceStub(self._channel)  # type: ignore[no-untyped-call]
            self._loop = loop
        return self._stub
