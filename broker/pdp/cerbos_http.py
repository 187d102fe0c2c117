"""The Cerbos policy decision point over its REST API (`cerbos.address: http(s)://host:port`).

The same questions and answers as `broker.pdp.cerbos.CerbosPolicyPoint` (gRPC), as JSON over
a few keep-alive HTTP/1.1 connections (`broker.pdp.http11`) instead of grpc.aio: less of the
broker's CPU per call when calls are few at a time, more of Cerbos's (its REST API is a
gateway in front of the gRPC one); docs/operations.md#cerbos-grpc-or-rest has the figures.
Requests are chunked at the PDP's
per-request limit and the chunks sent concurrently. A timeout, connection error, status other
than 200 or malformed answer raises `DependencyUnavailable`: the grant then mints nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from typing import TypeVar

from broker.errors import DependencyUnavailable
from broker.pdp import cerbos_json
from broker.pdp.cerbos import ACTION, AdminCheck, AdminPrincipal
from broker.pdp.http11 import Http11Pool, HttpProtocolError
from broker.ports import DelegationQuestion

MAX_CONNECTIONS = 16
"""Requests in flight to Cerbos at once by default (`cerbos.rest_max_connections`); more wait
their turn (within the call's deadline)."""

T = TypeVar("T")
log = logging.getLogger(__name__)


class _BadStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# What means "Cerbos did not answer usefully": fail closed. Anything else is a bug and raises.
_UNAVAILABLE = (TimeoutError, OSError, HttpProtocolError, cerbos_json.MalformedResponse,
                _BadStatus)


class CerbosHttpPolicyPoint:
    def __init__(self, base_url: str, *, timeout_ms: int,
                 max_resources_per_request: int = 50,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._timeout = timeout_ms / 1000
        self._chunk = max_resources_per_request
        self._pool = Http11Pool(base_url, max_connections=max_connections)

    @property
    def pool(self) -> Http11Pool:
        return self._pool

    async def close(self) -> None:
        await self._pool.aclose()

    async def delegable_scopes(self, question: DelegationQuestion) -> frozenset[str]:
        principal = cerbos_json.principal(question.subject, question.roles,
                                          question.principal_attr)
        entries = cerbos_json.delegation_resources(question)
        chunks = [entries[i : i + self._chunk] for i in range(0, len(entries), self._chunk)]
        answers = await self._call(self._check_all(principal, chunks, question.request_id))
        return frozenset(resource_id for effects in answers
                         for resource_id, actions in effects.items()
                         if actions.get(ACTION) == cerbos_json.ALLOW)

    async def check_admin(self, principal: AdminPrincipal,
                          checks: Sequence[AdminCheck]) -> list[bool]:
        """One CheckResources for an admin request: is each (resource, action) allowed?"""
        who = cerbos_json.principal(principal.subject, principal.roles, principal.attr)
        by_id = await self._call(self._check(who, cerbos_json.admin_resources(checks)))
        return [by_id.get(c.resource_id, {}).get(c.action) == cerbos_json.ALLOW
                for c in checks]

    async def ping(self) -> None:
        async def health() -> None:
            status, _ = await self._pool.request("GET", cerbos_json.HEALTH_PATH)
            if status != 200:
                raise _BadStatus(status)

        await self._call(health())

    async def _check_all(self, principal: cerbos_json.Json, chunks: list[list[cerbos_json.Json]],
                         request_id: str | None) -> list[dict[str, Mapping[str, str]]]:
        if len(chunks) == 1:  # the usual case: no task group to set up
            return [await self._check(principal, chunks[0], request_id)]
        # A task group, not gather: when one chunk fails the others are cancelled, not left
        # running past the deadline.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._check(principal, c, request_id)) for c in chunks]
        return [t.result() for t in tasks]

    async def _check(self, principal: cerbos_json.Json, resources: list[cerbos_json.Json],
                     request_id: str | None = None) -> dict[str, Mapping[str, str]]:
        body = cerbos_json.request_body(principal, resources, request_id or str(uuid.uuid4()))
        status, answer = await self._pool.request("POST", cerbos_json.CHECK_PATH, body)
        if status != 200:
            raise _BadStatus(status)
        return cerbos_json.read_effects(answer)

    async def _call(self, op: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await op
        except _UNAVAILABLE as exc:
            _warn(exc)
        except ExceptionGroup as group:  # from concurrent chunks
            failures, others = group.split(_UNAVAILABLE)
            if others is not None or failures is None:
                raise
            _warn(failures.exceptions[0])
        raise DependencyUnavailable("cerbos unavailable")


def _warn(exc: BaseException) -> None:
    # The kind of failure only: never the request (it carries the user's claims).
    detail = f"status {exc.status}" if isinstance(exc, _BadStatus) else type(exc).__name__
    log.warning("cerbos (REST) did not answer: %s", detail)
